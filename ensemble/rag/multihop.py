"""Multi-hop continuations: a beam search over chains of chunks on the bankable composite score.

Hop 1 is scored against the input; hop h+1 against the end of hop h (`search.query_after`), so
a chain's score is the sum of its hops' composites, as in unit-selection synthesis (target cost
+ concatenation cost summed along the path). No chunk may overlap the input's own material or any
chunk already in the chain, so a chain never loops on the same music.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ensemble.rag import scoring
from ensemble.rag.chunks import QueryFeatures
from ensemble.rag.index import RagIndex
from ensemble.rag.search import DEFAULT_CANDIDATES, Span, query_after, require_chunks, search


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
    the ``beam_width`` best chains (default ``top_k``), so with ``hops=1`` this is plain Top-K.
    """
    if hops < 1:
        raise ValueError("hops must be >= 1")
    require_chunks(index)
    weights = scoring.parse_weights(weights)
    width = max(beam_width or top_k, top_k)
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
        beam = sorted(grown, key=lambda c: -c.total)[:width]
    return [c for c in beam[:top_k] if c.hops]
