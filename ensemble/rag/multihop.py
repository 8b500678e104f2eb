"""Multi-hop continuations: a beam search over chains of chunks on the bankable composite score.

Hop 1 is scored against the input; hop h+1 against the end of hop h (`search.query_after`), so
a chain's score is the sum of its hops' composites, as in unit-selection synthesis (target cost
+ concatenation cost summed along the path). No chunk may overlap the input's own material or any
chunk already in the chain, so a chain never loops on the same music.

The chains offered together share no material either, as single-hop Top-K candidates do: a
plain beam collapses onto the best first hop (its children outscore everything else), so a
listener would hear one opening several times. The beam therefore keeps the best mutually
distinct chains first (a diverse beam) and the best of the rest after them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ensemble.rag import scoring
from ensemble.rag.chunks import QueryFeatures
from ensemble.rag.index import RagIndex
from ensemble.rag.search import (
    DEFAULT_CANDIDATES,
    Span,
    chunks_overlap,
    pick_distinct,
    query_after,
    require_chunks,
    search,
)


@dataclass
class Hop:
    """One chosen chunk and its scores against what precedes it."""

    row: int
    parts: dict[str, float]
    coherence: float
    composite: float


@dataclass
class Chain:
    """A sequence of hops; ``total`` is the bankable score (sum of hop composites)."""

    hops: list[Hop] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(h.composite for h in self.hops)

    @property
    def rows(self) -> list[int]:
        return [h.row for h in self.hops]


def _used(index: RagIndex, chain: Chain) -> list[Span]:
    length = index.config.chunk_seconds
    return [
        Span(index.source(r), float(index.start_s[r]), float(index.start_s[r]) + length)
        for r in chain.rows
    ]


def _distinct_first(index: RagIndex, chains: list[Chain], limit: int) -> list[Chain]:
    """Up to ``limit`` of ``chains`` (best first), those sharing no material with a better kept
    chain first (`search.pick_distinct`)."""
    ordered = sorted(chains, key=lambda c: -c.total)

    def clash(a: int, b: int) -> bool:
        rows_a, rows_b = ordered[a].rows, ordered[b].rows
        return any(chunks_overlap(index, r, q) for r in rows_a for q in rows_b)

    return [ordered[pos] for pos in pick_distinct(len(ordered), clash, limit)]


def beam_search(
    index: RagIndex,
    query: QueryFeatures,
    *,
    hops: int = 1,
    top_k: int = 10,
    weights: Mapping[str, float] | None = None,
    candidates: int = DEFAULT_CANDIDATES,
    exclude: Iterable[Span] = (),
    beam_width: int | None = None,
) -> list[Chain]:
    """The ``top_k`` best chains of ``hops`` chunks continuing ``query``, best first.

    Each hop expands every chain in the beam with its ``beam_width`` best next chunks and keeps
    ``beam_width`` chains (default ``2 * top_k``), distinct ones first (see the module doc); with
    ``hops=1`` this is the single-hop Top-K.
    """
    if hops < 1:
        raise ValueError("hops must be >= 1")
    require_chunks(index)
    weights = scoring.parse_weights(weights)
    width = max(beam_width or 2 * top_k, top_k)
    spans = list(exclude)
    beam = [Chain()]
    for _ in range(hops):
        grown: list[Chain] = []
        for chain in beam:
            here = query if not chain.hops else query_after(index, chain.rows[-1])
            ranked = search(
                index,
                here,
                top_k=width,
                weights=weights,
                candidates=candidates,
                exclude=spans + _used(index, chain),
            )
            for i, row in enumerate(ranked.rows):
                hop = Hop(
                    row=int(row),
                    parts={k: float(v[i]) for k, v in ranked.parts.items()},
                    coherence=float(ranked.coherence[i]),
                    composite=float(ranked.composite[i]),
                )
                grown.append(Chain([*chain.hops, hop]))
        if not grown:  # everything left overlaps used material: return the shorter chains
            break
        beam = _distinct_first(index, grown, width)
    return [c for c in _distinct_first(index, beam, top_k) if c.hops]
