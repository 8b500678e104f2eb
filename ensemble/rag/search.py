"""Two-stage query: approximate vector search proposes candidates, exact scoring reranks them.

Stage 1 compares one combined style vector per chunk (FAISS, sub-linear for large indexes);
stage 2 computes the full composite score (per-scale relevance + seam coherence) for the few
hundred candidates only, so a query costs the same at 10^4 and 10^6 chunks apart from stage 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from ensemble.errors import IndexMismatchError
from ensemble.rag import scoring
from ensemble.rag.chunks import QueryFeatures
from ensemble.rag.index import RagIndex

DEFAULT_CANDIDATES = 200


@dataclass(frozen=True)
class Span:
    """Material a result must not overlap: ``[start_s, end_s)`` of the indexed file ``source``."""

    source: str
    start_s: float
    end_s: float


@dataclass
class Ranked:
    """Candidates in descending composite order; every array has a leading candidate axis (C,)."""

    rows: np.ndarray  # chunk rows in the index
    parts: dict[str, np.ndarray]  # PART_NAMES -> (C,)
    coherence: np.ndarray
    composite: np.ndarray
    per_scale: np.ndarray  # (C, S) relevance cosine per lookback scale

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, order: np.ndarray) -> Ranked:
        return Ranked(
            self.rows[order],
            {k: v[order] for k, v in self.parts.items()},
            self.coherence[order],
            self.composite[order],
            self.per_scale[order],
        )


def combined(context: np.ndarray) -> np.ndarray:
    """(S, d) per-scale vectors → (d,) stage-1 vector (unit mean, as stored for chunks)."""
    mean = context.astype(np.float32).mean(axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-9)


def score_rows(
    index: RagIndex, query: QueryFeatures, rows: np.ndarray, weights: Mapping[str, float]
) -> Ranked:
    """Stage 2: exact scores of candidate ``rows`` (C,) against ``query``, sorted best first."""
    seams = index.seams.take(rows)
    rel, per_scale = scoring.relevance(query.context, index.styles(index.ctx_start[rows]))
    parts = {
        scoring.RELEVANCE: rel,
        "pitch_coherence": scoring.pitch_coherence(query.f0_end, seams.f0_start),
        "chroma_coherence": scoring.chroma_coherence(query.chroma_end, seams.chroma_start),
        "loudness_coherence": scoring.loudness_coherence(query.db_end, seams.db_start),
        "rhythm_coherence": scoring.rhythm_coherence(
            query.tempo, query.meter, seams.tempo, seams.meter, seams.jitter_start
        ),
    }
    total = scoring.composite(parts, weights)
    ranked = Ranked(rows, parts, scoring.coherence(parts, weights), total, per_scale)
    return ranked.take(np.argsort(-total, kind="stable"))


def blocked(index: RagIndex, rows: np.ndarray, spans: Iterable[Span]) -> np.ndarray:
    """(C,) True where a chunk overlaps any span of the same source."""
    names = np.array([f.name for f in index.files])
    mask = np.zeros(len(rows), bool)
    chunk = index.config.chunk_seconds
    starts, sources = index.start_s[rows], names[index.file_of[rows]]
    for span in spans:
        mask |= (sources == span.source) & (starts < span.end_s) & (starts + chunk > span.start_s)
    return mask


def query_after(index: RagIndex, row: int) -> QueryFeatures:
    """The query a chunk poses to whatever follows it: its source's context and seam at its end.

    The context is that of the chunk's own file at the chunk end (its last chunk_seconds are the
    chunk itself), an approximation of the chained audio that needs no new GRU pass.
    """
    seams = index.seams
    return QueryFeatures(
        context=index.styles(index.ctx_end[[row]])[0],
        f0_end=float(seams.f0_end[row]),
        db_end=float(seams.db_end[row]),
        chroma_end=seams.chroma_end[row],
        context_s=max(index.config.lookbacks_s),
        tempo=float(seams.tempo[row]),
        meter=int(seams.meter[row]),
        bar_pos_end=float(seams.bar_pos_end[row]),
    )


def require_chunks(index: RagIndex) -> None:
    if len(index) == 0:
        raise IndexMismatchError(
            f"The index at '{index.root}' holds no chunks (its {len(index.files)} file(s) were "
            "skipped or are shorter than one chunk plus its minimum context); add longer audio "
            "with `python -m ensemble index build SOURCE --out INDEX --add`."
        )


def search(
    index: RagIndex,
    query: QueryFeatures,
    *,
    top_k: int = 10,
    weights: Mapping[str, float] | None = None,
    candidates: int = DEFAULT_CANDIDATES,
    exclude: Iterable[Span] = (),
) -> Ranked:
    """The ``top_k`` best continuations of ``query`` that overlap none of ``exclude``.

    Stage 1 asks for ``candidates`` neighbours and widens the request (×4) while exclusions
    leave fewer than ``top_k``.
    """
    require_chunks(index)
    weights = scoring.parse_weights(weights)
    spans = list(exclude)
    vector = combined(query.context)[None]
    k = max(candidates, top_k)
    while True:
        _, found = index.search(vector, k)
        rows = found[0][found[0] >= 0]
        rows = rows[~blocked(index, rows, spans)]
        if len(rows) >= top_k or k >= len(index):
            break
        k *= 4
    ranked = score_rows(index, query, rows, weights)
    return ranked.take(distinct_order(index, ranked.rows, top_k))


def chunks_overlap(index: RagIndex, row: int, other: int) -> bool:
    """Whether two chunks share material: same source, starts less than a chunk apart."""
    return bool(
        index.file_of[row] == index.file_of[other]
        and abs(index.start_s[row] - index.start_s[other]) < index.config.chunk_seconds
    )


def pick_distinct(n: int, clash: Callable[[int, int], bool], limit: int) -> list[int]:
    """Up to ``limit`` of positions 0..n-1 (best first): each one that clashes with no position
    kept before it, then the best of the others when too few distinct ones exist."""
    taken: list[int] = []
    for pos in range(n):
        if not any(clash(pos, kept) for kept in taken):
            taken.append(pos)
            if len(taken) == limit:
                return taken
    chosen = set(taken)
    return taken + [pos for pos in range(n) if pos not in chosen][: limit - len(taken)]


def distinct_order(index: RagIndex, rows: np.ndarray, top_k: int) -> np.ndarray:
    """Positions of the best ``top_k`` of ``rows`` (best first) that do not overlap each other.

    Neighbouring chunks of one source score almost alike (1 s hop, 4 s chunks), so a plain Top-K
    would offer a listener the same passage shifted by a second; overlapping ones are kept only
    when too few distinct candidates exist.
    """
    picked = pick_distinct(
        len(rows), lambda a, b: chunks_overlap(index, int(rows[a]), int(rows[b])), top_k
    )
    return np.array(picked, int)
