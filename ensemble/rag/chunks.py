"""Chunk features: what the index stores per chunk and what a query computes from its input.

One pass per file: `extract_features` once and one `embed()` over the whole file (the decoder GRU
is causal, so its state at time t sees exactly the music before t), then every chunk is a slice.
Window means come from cumulative sums, so a file with P context positions and S lookback scales
costs O(T + P·S) however long the windows are.

Style vectors describe the context *preceding* a position: for each lookback L the window
``[p - L, p)`` is summarised by its mean GRU state (D,), mean chroma (12,) and loudness histogram
(B,). Each part is centred on the index's mean (so cosines spread over [-1, 1] instead of
crowding near 1: GRU states of unrelated music share a large common component), unit-normalised,
weighted and concatenated:

    [ sqrt(w_gru) · unit(gru - c_gru),  sqrt(w_chroma) · unit(chroma - c_chroma),
      sqrt(w_loud) · unit(hist - c_hist) ] / sqrt(Σw)

so the cosine of two style vectors is the w-weighted mean of the three part correlations.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Protocol

import numpy as np

from ensemble.config import FRAME_RATE, SAMPLE_RATE
from ensemble.errors import EnsembleError, IndexMismatchError
from ensemble.features import FeatureFrame
from ensemble.limits import CHUNK_SECONDS, HOP_SECONDS, LOOKBACK_SECONDS
from ensemble.rhythm import BeatGrid, steady, track_beats

# Bump when the meaning of stored features changes (2: beat grid at seams, 3: beat jitter,
# 4: chord changes in the beat tracker of polyphonic files).
FEATURE_VERSION = 4
VOICED_SHARE = 0.5  # a seam window with fewer voiced frames counts as unvoiced (f0 = 0)
# A seam's place in the beat comes from a straight line through this many beats around it (17
# beats: seam phase within 35 ms for 55% of simulated seams on the train and validation tracks
# of data/corpus, 53% with the tracker's own 9-beat fits, which follow a rubato line closer).
SEAM_BEATS = 17


class Embedder(Protocol):
    """What the index needs from a decoder: its name and its GRU hidden states."""

    name: str

    def embed(self, f0_hz: np.ndarray, loudness_db: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class FeatureConfig:
    """Everything that changes stored features; an index refuses queries made with another one.

    Defaults: 4 s chunks (a phrase fragment: long enough to hear as a continuation, short enough
    that many fit a track) on a 1 s hop (continuation points every second; the recall benchmark
    counts a hit within one hop). Lookbacks are the seed's 7.0–8.5 s multi-scale windows.
    """

    chunk_seconds: float = 4.0
    hop_seconds: float = 1.0
    lookbacks_s: tuple[float, ...] = (7.0, 7.5, 8.0, 8.5)
    min_context_s: float = 1.0  # chunks with less music before them have no style to match
    seam_seconds: float = 0.2  # pitch at a seam: median over this window
    key_seconds: float = 1.0  # chroma and level at a seam: mean over this window (a beat or two)
    style_weights: tuple[float, float, float] = (0.6, 0.25, 0.15)  # GRU, chroma, loudness
    loudness_edges_db: tuple[float, ...] = (-70.0, -60.0, -50.0, -40.0, -30.0, -20.0, -10.0)
    embedder: str = ""  # checkpoint name or folder that queries load to embed their input
    embedder_sha256: str = ""  # its weights' checksum: the embedding's identity
    sample_rate: int = SAMPLE_RATE
    frame_rate: int = FRAME_RATE
    version: int = FEATURE_VERSION

    def __post_init__(self) -> None:
        CHUNK_SECONDS.check(self.chunk_seconds)
        HOP_SECONDS.check(self.hop_seconds)
        for lookback in self.lookbacks_s:
            LOOKBACK_SECONDS.check(lookback)
        ratio = self.chunk_seconds / self.hop_seconds
        if abs(ratio - round(ratio)) > 1e-6:
            raise EnsembleError(
                f"--chunk-seconds ({self.chunk_seconds:g}) must be a whole multiple of "
                f"--hop-seconds ({self.hop_seconds:g}) so chunk ends fall on the hop grid."
            )
        hop_frames = self.hop_seconds * self.frame_rate
        if abs(hop_frames - round(hop_frames)) > 1e-6:
            raise EnsembleError(f"--hop-seconds must be a multiple of 1/{self.frame_rate} s.")
        if not self.lookbacks_s:
            raise EnsembleError("At least one lookback window is needed.")

    @property
    def hop_frames(self) -> int:
        return round(self.hop_seconds * self.frame_rate)

    @property
    def chunk_hops(self) -> int:
        return round(self.chunk_seconds / self.hop_seconds)

    def frames(self, seconds: float) -> int:
        return max(1, round(seconds * self.frame_rate))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeatureConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise IndexMismatchError(
                f"The index's feature config has fields this version does not know "
                f"({', '.join(unknown)}); rebuild the index with `python -m ensemble index build`."
            )
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def differences(self, other: FeatureConfig) -> list[str]:
        """Human-readable ``name: mine vs theirs`` for every field that differs."""
        out = []
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if mine != theirs:
                if f.name == "embedder_sha256":
                    mine, theirs = str(mine)[:12], str(theirs)[:12]
                out.append(f"{f.name} {mine} vs {theirs}")
        return out


@dataclass
class Seams:
    """Per-chunk seam and content features, arrays with a leading chunk axis (N,)."""

    f0_start: np.ndarray  # (N,) Hz at the chunk start, 0 = unvoiced
    f0_end: np.ndarray  # (N,) Hz at the chunk end
    db_start: np.ndarray  # (N,) mean loudness dB over the first key window
    db_end: np.ndarray  # (N,) over the last key window
    chroma_start: np.ndarray  # (N, 12) mean chroma over the first key window
    chroma_end: np.ndarray  # (N, 12) over the last key window
    chroma_mean: np.ndarray  # (N, 12) over the whole chunk
    rms: np.ndarray  # (N,) mean RMS energy of the chunk
    tempo: np.ndarray  # (N,) beats per minute of the chunk's file (`ensemble.rhythm`)
    meter: np.ndarray  # (N,) beats per bar
    bar_pos_start: np.ndarray  # (N,) position in the bar (beats, fractional) at the chunk start
    bar_pos_end: np.ndarray  # (N,) at the chunk end
    jitter_start: np.ndarray  # (N,) beats: how far the tracked beats stray from the seam line

    def take(self, index: np.ndarray) -> Seams:
        return Seams(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def concat(cls, parts: list[Seams]) -> Seams:
        return cls(
            **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)}
        )

    @classmethod
    def empty(cls) -> Seams:
        arrays = {f.name: np.zeros(0, np.float32) for f in fields(cls)}
        for name in ("chroma_start", "chroma_end", "chroma_mean"):
            arrays[name] = np.zeros((0, 12), np.float32)
        return cls(**arrays)


@dataclass
class FileChunks:
    """The chunks of one file: starts, seam features, and style vectors on the hop grid.

    ``context[ctx_start[i]]`` describes chunk i's preceding context (S, K) and
    ``context[ctx_end[i]]`` the context at its end (what follows it in a multi-hop chain is
    matched against that). They become style vectors when the index writes them.
    """

    name: str
    duration_s: float
    start_s: np.ndarray  # (N,) float
    ctx_start: np.ndarray  # (N,) int, rows of `context`
    ctx_end: np.ndarray  # (N,) int
    context: np.ndarray  # (P, S, K) float32 raw descriptors (see `context_means`)
    seams: Seams = field(repr=False)


@dataclass
class QueryFeatures:
    """What a continuation is matched against: the context and seam at the end of the input."""

    context: np.ndarray  # (S, d) unit style vectors
    f0_end: float  # Hz, 0 = unvoiced
    db_end: float
    chroma_end: np.ndarray  # (12,)
    context_s: float  # seconds of context actually used (< shortest lookback for short inputs)
    tempo: float = 0.0  # beats per minute (0: unknown)
    meter: int = 4  # beats per bar
    bar_pos_end: float = 0.0  # position in the bar (beats) where the continuation starts
    notes: list[str] = field(default_factory=list)


def _window_means(cumsum: np.ndarray, ends: np.ndarray, length: int) -> np.ndarray:
    """Means over frames ``[end - length, end)`` clipped at 0, from a (T+1, K) cumulative sum."""
    starts = np.maximum(ends - length, 0)
    counts = np.maximum(ends - starts, 1)[:, None]
    return (cumsum[ends] - cumsum[starts]) / counts


def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-9)


def _cumsum(x: np.ndarray) -> np.ndarray:
    """(T, K) -> (T+1, K) float64 cumulative sum with a leading zero row."""
    out = np.zeros((x.shape[0] + 1, x.shape[1]), np.float64)
    np.cumsum(x, axis=0, out=out[1:])
    return out


def context_means(
    hidden: np.ndarray, feats: FeatureFrame, ends: np.ndarray, config: FeatureConfig
) -> np.ndarray:
    """Raw descriptors of the contexts ending at given frames.

    Args:
        hidden: (T, D) decoder GRU hidden states of the whole file.
        feats: the file's features (T frames).
        ends: (P,) frame positions; each context is the lookback window before it (clipped at 0).
        config: lookbacks and loudness bins.

    Returns:
        (P, S, D + 12 + B) float32 window means [GRU state | chroma | loudness histogram].
    """
    n = min(len(hidden), feats.n_frames)
    ends = np.minimum(np.asarray(ends, np.int64), n)
    edges = np.asarray(config.loudness_edges_db)
    loud_onehot = np.zeros((n, len(edges) + 1), np.float32)
    loud_onehot[np.arange(n), np.searchsorted(edges, feats.loudness_db[:n])] = 1.0
    sums = _cumsum(np.concatenate([hidden[:n], feats.chroma[:, :n].T, loud_onehot], axis=1))
    scales = [_window_means(sums, ends, config.frames(lb)) for lb in config.lookbacks_s]
    return np.stack(scales, axis=1).astype(np.float32)


def style_centre(means: np.ndarray) -> np.ndarray:
    """(K,) centre of raw descriptors (..., K): their mean over every position and scale."""
    return means.reshape(-1, means.shape[-1]).mean(axis=0).astype(np.float32)


def style_vectors(means: np.ndarray, centre: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Unit style vectors (..., K) from raw descriptors (..., K) and the index's centre (K,)."""
    n_hist = len(config.loudness_edges_db) + 1
    k = means.shape[-1]
    bounds = (0, k - 12 - n_hist, k - n_hist, k)
    scale = np.sqrt(np.asarray(config.style_weights) / sum(config.style_weights))
    centred = means - centre
    parts = [
        w * _unit(centred[..., lo:hi])
        for w, lo, hi in zip(scale, bounds[:-1], bounds[1:], strict=True)
    ]
    return _unit(np.concatenate(parts, axis=-1)).astype(np.float32)


def seam_pitch(feats: FeatureFrame, start: int, stop: int) -> float:
    """Median voiced f0 (Hz) over frames ``start:stop``, or 0 when mostly unvoiced."""
    window = feats.slice(max(start, 0), stop)
    voiced = window.voiced
    if window.n_frames == 0 or voiced.mean() < VOICED_SHARE:
        return 0.0
    return float(np.median(window.f0_hz[voiced]))


def seam_grid(grid: BeatGrid) -> BeatGrid:
    """The beat grid steadied over SEAM_BEATS beats: where seams stand in their bars."""
    beats = steady(grid.beats, SEAM_BEATS)
    bars = np.searchsorted(grid.beats, grid.downbeats)
    return replace(grid, beats=beats, downbeats=beats[bars])


def seam_jitter(grid: BeatGrid, times_s: np.ndarray) -> np.ndarray:
    """(N,) RMS distance (in beats) of the tracked beats from the seam line, over the SEAM_BEATS
    beats around each time: how far a seam's place in the beat can be trusted. (Over the train
    and validation tracks of data/corpus, chunk starts with jitter <= 0.012 beats had their
    phase within 35 ms 95% of the time, those above 0.065 beats 15%.)"""
    if len(grid.beats) < 2:
        return np.zeros(len(times_s))
    period = 60.0 / grid.tempo_bpm
    squared = ((grid.beats - steady(grid.beats, SEAM_BEATS)) / period) ** 2
    window = np.ones(min(SEAM_BEATS, len(squared)))
    counts = np.convolve(np.ones_like(squared), window, "same")  # fewer beats near the ends
    local = np.convolve(squared, window, "same") / counts
    nearest = np.clip(np.searchsorted(grid.beats, times_s), 0, len(local) - 1)
    return np.sqrt(local[nearest])


def chunk_seams(
    feats: FeatureFrame, starts: np.ndarray, config: FeatureConfig, grid: BeatGrid
) -> Seams:
    """Seam features of chunks starting at frames ``starts`` (each chunk_seconds long).

    Pitch is taken over the short seam window (the note that crosses the seam); level and key
    over the longer key window, so a fresh onset after a decaying note is not read as a jump.
    The file's beat ``grid`` gives each seam its place in the bar, so a continuation can start
    on the beat where the query stops.
    """
    length = config.frames(config.chunk_seconds)
    seam, key = config.frames(config.seam_seconds), config.frames(config.key_seconds)
    chroma_sum = _cumsum(feats.chroma.T)
    level_sum = _cumsum(feats.loudness_db[:, None])
    rms_sum = _cumsum(feats.rms[:, None])
    ends = starts + length
    _, bar_pos = seam_grid(grid).frame_positions(feats.n_frames + 1)
    count = len(starts)
    return Seams(
        f0_start=np.array([seam_pitch(feats, s, s + seam) for s in starts], np.float32),
        f0_end=np.array([seam_pitch(feats, e - seam, e) for e in ends], np.float32),
        db_start=_window_means(level_sum, starts + key, key)[:, 0].astype(np.float32),
        db_end=_window_means(level_sum, ends, key)[:, 0].astype(np.float32),
        chroma_start=_window_means(chroma_sum, starts + key, key).astype(np.float32),
        chroma_end=_window_means(chroma_sum, ends, key).astype(np.float32),
        chroma_mean=_window_means(chroma_sum, ends, length).astype(np.float32),
        rms=_window_means(rms_sum, ends, length)[:, 0].astype(np.float32),
        tempo=np.full(count, grid.tempo_bpm, np.float32),
        meter=np.full(count, grid.beats_per_bar, np.float32),
        bar_pos_start=bar_pos[np.minimum(starts, feats.n_frames)].astype(np.float32),
        bar_pos_end=bar_pos[np.minimum(ends, feats.n_frames)].astype(np.float32),
        jitter_start=seam_jitter(grid, starts / config.frame_rate).astype(np.float32),
    )


def chunk_file(
    name: str, feats: FeatureFrame, hidden: np.ndarray, config: FeatureConfig
) -> FileChunks:
    """Slice one analysed file into chunks on the hop grid.

    Args:
        name: the file's id in the index (chunk ids are ``name@start``).
        feats: features of the whole file (T frames).
        hidden: (T, D) embedder hidden states of the whole file.
        config: chunking and style settings.
    """
    n = min(feats.n_frames, len(hidden))
    hop, k = config.hop_frames, config.chunk_hops
    first = math.ceil(config.frames(config.min_context_s) / hop)
    last = (n - k * hop) // hop  # last hop index whose whole chunk fits in the file
    starts_hop = np.arange(first, max(last + 1, first), dtype=np.int64)  # empty if none fit
    # Context positions: every chunk start and every chunk end on the hop grid.
    positions = np.arange(first, first + len(starts_hop) + k * bool(len(starts_hop)))
    context = context_means(hidden, feats, positions * hop, config)
    seams = chunk_seams(feats, starts_hop * hop, config, track_beats(feats))
    return FileChunks(
        name=name,
        duration_s=n / config.frame_rate,
        start_s=(starts_hop * config.hop_seconds).astype(np.float64),
        ctx_start=starts_hop - first,
        ctx_end=starts_hop - first + k,
        context=context,
        seams=seams,
    )


def query_features(
    feats: FeatureFrame, hidden: np.ndarray, config: FeatureConfig, centre: np.ndarray
) -> QueryFeatures:
    """Context and seam features at the end of an input (the point a continuation starts).

    An input shorter than the shortest lookback is matched on the context it has; the returned
    notes say so.
    """
    n = min(feats.n_frames, len(hidden))
    context = style_vectors(context_means(hidden, feats, np.array([n]), config)[0], centre, config)
    seam, key = config.frames(config.seam_seconds), config.frames(config.key_seconds)
    f0_end = seam_pitch(feats, n - seam, n)
    db_end = float(feats.loudness_db[max(n - key, 0) : n].mean())
    chroma_end = feats.chroma[:, max(n - key, 0) : n].mean(axis=1)
    context_s = min(n / config.frame_rate, max(config.lookbacks_s))
    grid = track_beats(feats)
    _, bar_pos = seam_grid(grid).frame_positions(n + 1)
    notes = []
    shortest = min(config.lookbacks_s)
    if context_s < shortest:
        notes.append(
            f"The input is {context_s:.1f} s long, shorter than the shortest lookback "
            f"({shortest:g} s); style was matched on the {context_s:.1f} s available."
        )
    return QueryFeatures(
        context,
        f0_end,
        db_end,
        chroma_end.astype(np.float32),
        context_s,
        tempo=grid.tempo_bpm,
        meter=grid.beats_per_bar,
        bar_pos_end=float(bar_pos[n]),
        notes=notes,
    )
