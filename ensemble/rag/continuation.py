"""Retrieval: the Top-K continuations of a piece of audio, ranked, with their seams planned.

`retrieve` answers with scores and provenance only; `ensemble.rag.render` makes their audio (raw,
or performed by the ensemble) and `write_continuations` writes what a run found.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ensemble.audio import AudioSource, load_audio, write_audio
from ensemble.config import SAMPLE_RATE
from ensemble.features import FeatureFrame
from ensemble.limits import DEFAULT_TOP_K
from ensemble.rag import scoring
from ensemble.rag.analyse import analyse_query, check_embedder
from ensemble.rag.chunks import Embedder, QueryFeatures
from ensemble.rag.index import RagIndex, open_index
from ensemble.rag.multihop import Chain, beam_search
from ensemble.rag.seam import Pulse, SeamPlan, after, plan_seam
from ensemble.rag.search import DEFAULT_CANDIDATES, Span, require_chunks

TAIL_SECONDS = 4.0  # how much of the input a continuation's audio starts with


@dataclass
class Segment:
    """One retrieved chunk of a continuation and its scores against what precedes it."""

    chunk_id: str
    source: str
    start_s: float
    relevance: float
    coherence: float
    composite: float
    parts: dict[str, float]
    tempo_ratio: float = 1.0  # time-stretch applied (query tempo / source tempo)
    phase_error_ms: float = 0.0  # estimated offset between the beat grids left at its seam
    shift_beats: float = 0.0  # how far the seam moved from the indexed chunk start


@dataclass
class Continuation:
    """A ranked continuation: one chunk (or a chain of ``hops`` chunks), where its seams fall
    and, once rendered (`ensemble.rag.render`), its audio.

    Scores are means over hops (the beam search ranks by their sum, which orders chains of equal
    length identically). ``audio`` is the input's ending + seams + segments, (N,) raw mono;
    ``mix`` is that performed by the ensemble, (N, 2) stereo. Both are None until rendered.
    """

    rank: int
    chunk_ids: list[str]
    segments: list[Segment]
    relevance: float
    coherence: float
    composite: float
    parts: dict[str, float]
    audio: np.ndarray | None = None
    audio_rate: int = SAMPLE_RATE  # of ``audio`` (the analysis rate, unless rendered for output)
    seam_s: float = TAIL_SECONDS  # where the continuation starts in ``audio``
    mix: np.ndarray | None = None
    mix_rate: int = SAMPLE_RATE  # of ``mix``
    rows: list[int] = field(default_factory=list, repr=False)  # the chain's index rows
    plans: list[SeamPlan] = field(default_factory=list, repr=False)  # its planned seams

    def to_json(self, audio_file: str | None = None) -> dict[str, Any]:
        """The ranking.json record; ``scores`` is the flat dict the ratings module reads."""
        first = self.segments[0]
        scores = {
            "relevance": self.relevance,
            "coherence": self.coherence,
            "composite": self.composite,
            **self.parts,
        }
        return {
            "rank": self.rank,
            "chunk_id": "+".join(self.chunk_ids),
            "chunk_ids": self.chunk_ids,
            "source": first.source,
            "start_s": first.start_s,
            "seam_s": self.seam_s,
            "tempo_ratio": first.tempo_ratio,
            "phase_error_ms": first.phase_error_ms,
            "relevance": self.relevance,
            "coherence": self.coherence,
            "composite": self.composite,
            "parts": self.parts,
            "scores": scores,
            "segments": [s.__dict__ for s in self.segments],
            "audio": audio_file,
        }


def _segments(index: RagIndex, chain: Chain, plans: list[SeamPlan]) -> list[Segment]:
    return [
        Segment(
            chunk_id=index.chunk_id(h.row),
            source=index.source(h.row),
            start_s=round(plan.start_s, 3),
            relevance=h.parts[scoring.RELEVANCE],
            coherence=h.coherence,
            composite=h.composite,
            parts=h.parts,
            tempo_ratio=round(plan.rate, 4),
            phase_error_ms=round(plan.phase_error_ms, 1),
            shift_beats=round(plan.shift_beats, 3),
        )
        for h, plan in zip(chain.hops, plans, strict=True)
    ]


def _mean(values: Iterable[float]) -> float:
    return float(np.mean(list(values)))


def plan_chain(
    index: RagIndex,
    query: QueryFeatures,
    chain: Chain,
    seconds: float,
    exclude: Iterable[Span] = (),
) -> list[SeamPlan]:
    """Beat-aligned seams of a chain whose hops play ``seconds / hops`` seconds each; no seam
    moves back into ``exclude`` material."""
    per_hop = seconds / len(chain.rows)
    seams = index.seams
    pulse = Pulse(query.tempo, query.meter, query.bar_pos_end)
    # Played material per source: the excluded spans, then each hop's window as planned (or,
    # for hops not planned yet, where their chunk stands).
    taken = [(x.source, x.start_s, x.end_s) for x in exclude]
    windows = [(index.source(r), float(index.start_s[r]), float(index.start_s[r]) + per_hop)
               for r in chain.rows]  # fmt: skip
    plans: list[SeamPlan] = []
    for hop, row in enumerate(chain.rows):
        name = index.source(row)
        others = taken + windows[:hop] + windows[hop + 1 :]
        blocked = [(a, b) for src, a, b in others if src == name]
        source = Pulse(float(seams.tempo[row]), int(seams.meter[row]),
                       float(seams.bar_pos_start[row]))  # fmt: skip
        record = index.files[index.file_of[row]]
        plan = plan_seam(float(index.start_s[row]), source, pulse, record.duration_s, per_hop,
                         blocked)  # fmt: skip
        windows[hop] = (name, plan.start_s, plan.start_s + per_hop * plan.rate)
        plans.append(plan)
        # What follows continues from where this hop leaves the bar, at the tempo it plays.
        played = Pulse(source.tempo * plan.rate * plan.per_beat, pulse.meter, pulse.bar_pos)
        pulse = after(played, per_hop)
    return plans


def _near_file_ends(index: RagIndex, seconds: float) -> list[Span]:
    """Spans that block chunks whose source ends before ``seconds`` of material."""
    chunk = index.config.chunk_seconds
    return [
        Span(f.name, f.duration_s - seconds + chunk, f.duration_s)
        for f in index.files
        if seconds > chunk
    ]


def copies_of(index: RagIndex, path: Path) -> list[Span]:
    """The indexed files identical to ``path``, whole: a query with an indexed file would
    otherwise find its own chunks, trivially "perfect"."""
    from ensemble.rag.analyse import file_sha256

    digest = file_sha256(path)
    return [Span(r.name, 0.0, r.duration_s) for r in index.files if r.sha256 == digest]


@dataclass
class Retrieval:
    """What one query found: the ranked continuations and notes about the run as a whole, with
    what rendering their audio needs (the query's audio, the index, each hop's length)."""

    continuations: list[Continuation]
    notes: list[str]
    signal: np.ndarray  # (N,) the query's audio, mono at SAMPLE_RATE
    index: RagIndex
    seconds: float  # each continuation's length after the query's ending
    source: AudioSource | None = None  # the query as given (to read its ending at another rate)

    def ending(self, rate: int) -> np.ndarray:
        """The query's last TAIL_SECONDS, mono at ``rate`` (from its source when it has one)."""
        if rate == SAMPLE_RATE or self.source is None:
            from ensemble.audio import resample

            return resample(self.signal, SAMPLE_RATE, rate)[-round(TAIL_SECONDS * rate) :]
        ending = load_audio(self.source, sample_rate=rate, trim=True)  # as `signal` was cut
        return ending[-round(TAIL_SECONDS * rate) :]

    def output_rate(self) -> int:
        """The highest rate among the query's source and the files its continuations come
        from: raw continuations written at it keep every source's quality."""
        from ensemble.audio import native_rate

        rates = {native_rate(self.index.source_path(row))
                 for item in self.continuations for row in item.rows}  # fmt: skip
        if self.source is not None:
            rates.add(native_rate(self.source))
        return max(rates | {SAMPLE_RATE})


def retrieve(
    audio: AudioSource | np.ndarray,
    index: RagIndex | str | Path,
    *,
    top_k: int = DEFAULT_TOP_K,
    hops: int = 1,
    weights: str | Path | Mapping[str, float] | None = None,
    candidates: int = DEFAULT_CANDIDATES,
    exclude: Iterable[Span] = (),
    embedder: Embedder | None = None,
    features: FeatureFrame | None = None,
    seconds: float | None = None,
) -> Retrieval:
    """Top-K continuations of ``audio`` from ``index``.

    Args:
        audio: (N,) float32 mono at SAMPLE_RATE, a ``(samples, rate)`` tuple, or a file path.
        index: an opened index or its folder.
        top_k: number of continuations.
        hops: chunks chained per continuation (beam search; never reusing material).
        weights: composite weights (mapping, ``{"weights": ...}`` JSON file, or "k=v,...").
        candidates: stage-1 neighbours reranked exactly.
        exclude: indexed material the results must not overlap (e.g. where the input came from).
        embedder: the index's embedding model (default: loaded by the name the index records).
        features: features of ``audio`` already computed (e.g. `Performance.features`), so the
            query does not extract them again.
        seconds: length of each continuation after the input's ending (default: one chunk per
            hop); it is taken from consecutive material of each hop's source, which must hold
            that much after the chunk. Seams start on the beat where the input stops.

    Raises:
        AudioInputError: unusable input (too short to analyse, silent, ...).
        IndexMismatchError: missing, empty or mismatched index, or another embedding model.
    """
    index = index if isinstance(index, RagIndex) else open_index(index)
    require_chunks(index)
    weights = scoring.parse_weights(weights)
    signal = load_audio((audio, SAMPLE_RATE) if isinstance(audio, np.ndarray) else audio)
    if embedder is None:
        from ensemble.instrument import Instrument

        embedder = Instrument.from_pretrained(index.config.embedder)
    check_embedder(index.config, embedder)
    query = analyse_query(signal, index.config, embedder, index.centre, features)
    seconds = seconds if seconds is not None else hops * index.config.chunk_seconds
    exclude = list(exclude)
    chains = beam_search(
        index, query, hops=hops, top_k=top_k, weights=weights,
        candidates=candidates, exclude=[*exclude, *_near_file_ends(index, seconds / hops)],
    )  # fmt: skip
    seam_s = min(TAIL_SECONDS, len(signal) / SAMPLE_RATE)
    found = [
        _continuation(index, rank, chain, plan_chain(index, query, chain, seconds, exclude), seam_s)
        for rank, chain in enumerate(chains, start=1)
    ]
    source = (audio, SAMPLE_RATE) if isinstance(audio, np.ndarray) else audio
    return Retrieval(found, _run_notes(query, chains, hops, top_k), signal, index, seconds, source)


def _continuation(
    index: RagIndex, rank: int, chain: Chain, plans: list[SeamPlan], seam_s: float
) -> Continuation:
    segments = _segments(index, chain, plans)
    return Continuation(
        rank=rank,
        chunk_ids=[s.chunk_id for s in segments],
        segments=segments,
        relevance=_mean(s.relevance for s in segments),
        coherence=_mean(s.coherence for s in segments),
        composite=_mean(s.composite for s in segments),
        parts={k: _mean(s.parts[k] for s in segments) for k in scoring.PART_NAMES},
        seam_s=seam_s,
        rows=list(chain.rows),
        plans=plans,
    )


def _run_notes(query: QueryFeatures, chains: list[Chain], hops: int, top_k: int) -> list[str]:
    notes = list(query.notes)
    if chains and len(chains[0].hops) < hops:
        notes.append(
            f"Only {len(chains[0].hops)} of {hops} hops fit: the index has no more material "
            "that does not overlap the chain."
        )
    if len(chains) < top_k:
        notes.append(f"Only {len(chains)} continuation(s) found (asked for {top_k}).")
    return notes


def write_continuations(
    out: str | Path,
    continuations: list[Continuation],
    *,
    notes: Iterable[str] = (),
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``out/ranking.json`` (``notes``: the run's, from `Retrieval.notes`) and one
    ``continuation_NN.wav`` per rendered continuation (its mix when performed, else raw)."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for item in continuations:
        performed = item.mix is not None
        sound, rate = (item.mix, item.mix_rate) if performed else (item.audio, item.audio_rate)
        name = None
        if sound is not None:
            name = f"continuation_{item.rank:02d}.wav"
            write_audio(folder / name, sound, rate)
        records.append(item.to_json(name))
    ranking = {**(meta or {}), "notes": list(notes), "candidates": records}
    path = folder / "ranking.json"
    # Strict JSON (no bare NaN): the index refuses damaged vectors, so every score is finite.
    path.write_text(json.dumps(ranking, indent=2, allow_nan=False) + "\n")
    return path
