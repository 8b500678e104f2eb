"""Pure scoring functions: style relevance, seam coherence and their weighted composite.

All functions are vectorised over candidates (leading axis C) and have no side effects, so the
ranker, the multi-hop beam search, the benchmarks and `ratings fit` all score the same way.

Part names are a public contract: `ratings fit` writes ``{"weights": {name: value}}`` with exactly
these keys (see `PART_NAMES`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ensemble.errors import EnsembleError

RELEVANCE = "relevance"
COHERENCE_PARTS = ("pitch_coherence", "chroma_coherence", "loudness_coherence", "rhythm_coherence")
PART_NAMES = (RELEVANCE, *COHERENCE_PARTS)
# What each part measures, in a listener's words (the app's weight sliders).
PART_LABELS = {
    RELEVANCE: "relevance (style)",
    "pitch_coherence": "pitch coherence (seam)",
    "chroma_coherence": "key coherence (seam)",
    "loudness_coherence": "loudness coherence (seam)",
    "rhythm_coherence": "rhythm coherence (seam: tempo, meter, steady beat)",
}

# Relevance leads; the seam parts break ties between stylistically close chunks. On the
# validation tracks (bench/rag.py), recall@10 is flat for seam weights <= 0.15 while recall@1
# falls as they grow (0.86 at 0.05 each, 0.73 at 0.1, 0.66 at 0.15): natural continuations do
# change pitch, key and level at the seam. 0.1 each keeps seams audible in the ranking;
# `ensemble ratings fit` learns better weights from listeners.
DEFAULT_WEIGHTS: dict[str, float] = {
    RELEVANCE: 1.0,
    "pitch_coherence": 0.1,
    "chroma_coherence": 0.1,
    "loudness_coherence": 0.1,
    "rhythm_coherence": 0.1,
}

SCALE_TEMPERATURE = 0.05  # softmax over per-scale cosines: ~max when scales disagree by > 0.1
PITCH_SIGMA_CENTS = 150.0  # a whole-tone seam jump scores ~0.5, a semitone ~0.8
OCTAVE_PENALTY = 0.8  # an octave jump is musical but less smooth than a unison
UNVOICED_PITCH_SCORE = 0.5  # voiced↔unvoiced seam: pitch tells nothing either way
LOUDNESS_SCALE_DB = 8.0  # exp(-|jump| / 8 dB): 3 dB ~ 0.69, 10 dB ~ 0.29
# A continuation is time-stretched to the query's tempo when they differ by at most this ratio
# (phase-vocoder artefacts stay inaudible within a few percent); beyond it, it plays at its
# own tempo and scores low on rhythm.
MAX_STRETCH = 1.08
TEMPO_SIGMA = 0.04  # log-ratio: a 4% tempo difference scores ~0.6 (before stretching)
METER_MISMATCH = 0.5  # rhythm score factor when the bars have a different number of beats
# ... unless one bar holds a whole number of the other's (2/4 against 4/4: the tracker often
# hears a 2/4 tune in fours, and the two still agree on every other bar line).
METER_NESTED = 0.9
# A candidate whose beats stray from a steady line at its start cannot be trusted to land on the
# beat: its rhythm score is scaled by exp(-jitter / JITTER_BEATS) (jitter in beats, see
# `chunks.seam_jitter`).
JITTER_BEATS = 0.05


def parse_weights(spec: str | Path | Mapping[str, float] | None) -> dict[str, float]:
    """Composite weights from a mapping, a JSON file ``{"weights": {...}}`` or ``"k=v,k=v"``.

    Names not given keep their default; unknown names are refused so a typo cannot silently
    zero a part.
    """
    if spec is None:
        return dict(DEFAULT_WEIGHTS)
    given: dict[str, object]
    if isinstance(spec, Mapping):
        given = dict(spec)
    elif Path(spec).suffix == ".json" or Path(spec).is_file():
        given = _read_weights_file(Path(spec))
    else:
        given = _parse_pairs(str(spec))
    unknown = sorted(set(given) - set(PART_NAMES))
    if unknown:
        raise EnsembleError(
            f"Unknown score weight name(s) {', '.join(unknown)}; use {', '.join(PART_NAMES)}."
        )
    weights = dict(DEFAULT_WEIGHTS)
    for name, value in given.items():
        try:
            weights[name] = float(value)  # type: ignore[arg-type]  # checked just below
        except (TypeError, ValueError) as exc:
            raise EnsembleError(f"Weight '{name}' must be a number, not {value!r}.") from exc
        if not np.isfinite(weights[name]):
            raise EnsembleError(f"Weight '{name}' must be finite, not {value!r}.")
    return weights


def _read_weights_file(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise EnsembleError(f"Weights file '{path}' does not exist.") from exc
    except (OSError, ValueError) as exc:  # ValueError: also bytes that are not UTF-8
        raise EnsembleError(
            f"Weights file '{path}' is not valid UTF-8 JSON ({exc.__class__.__name__}); write "
            "it with `ensemble ratings fit` or give name=value pairs."
        ) from exc
    weights = data.get("weights") if isinstance(data, dict) else None
    if not isinstance(weights, dict):
        raise EnsembleError(
            f"Weights file '{path}' has no \"weights\" object; expected "
            '{"weights": {"relevance": 1.0, ...}} as written by `ensemble ratings fit`.'
        )
    return weights


def _parse_pairs(text: str) -> dict[str, object]:
    pairs: dict[str, object] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep:
            raise EnsembleError(
                f"Cannot read weights '{text}': give a JSON file or name=value pairs such as "
                "relevance=1,pitch_coherence=0.2."
            )
        pairs[name.strip()] = value.strip()  # converted (and checked) by parse_weights
    return pairs


def relevance(query: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Style relevance, adaptive across lookback scales.

    Args:
        query: (S, d) unit style vectors of the query context, one per lookback scale.
        candidates: (C, S, d) unit style vectors of each candidate's preceding context.

    Returns:
        relevance (C,) in [-1, 1]: softmax-weighted mean of the per-scale cosines, so the scale
        at which the contexts agree best dominates (phrases repeat at different lengths);
        per_scale (C, S) cosines.
    """
    per_scale = np.einsum("sd,csd->cs", query.astype(np.float32), candidates.astype(np.float32))
    logits = per_scale / SCALE_TEMPERATURE
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    return (weights * per_scale).sum(axis=1), per_scale


def pitch_coherence(f0_end: float, f0_start: np.ndarray) -> np.ndarray:
    """Seam pitch smoothness (C,) in [0, 1] from the cents jump, octave-tolerant.

    Args:
        f0_end: pitch (Hz) at the end of the previous material; <= 0 means unvoiced.
        f0_start: (C,) pitch (Hz) at each candidate's start; <= 0 means unvoiced.
    """
    f0_start = np.asarray(f0_start, np.float64)
    voiced = f0_start > 0
    if f0_end <= 0:
        # Silence/noise to silence/noise joins well; to a pitched note it is neutral.
        return np.where(voiced, UNVOICED_PITCH_SCORE, 1.0)
    cents = 1200.0 * np.log2(np.where(voiced, f0_start, 1.0) / f0_end)
    octaves = np.round(cents / 1200.0)
    folded = cents - 1200.0 * octaves  # distance to the nearest octave of the previous pitch
    score = np.exp(-0.5 * (folded / PITCH_SIGMA_CENTS) ** 2) * OCTAVE_PENALTY ** np.abs(octaves)
    return np.where(voiced, score, UNVOICED_PITCH_SCORE)


def chroma_coherence(chroma_end: np.ndarray, chroma_start: np.ndarray) -> np.ndarray:
    """Key/harmony agreement across the seam (C,) in [0, 1].

    Args:
        chroma_end: (12,) mean pitch-class profile just before the seam.
        chroma_start: (C, 12) mean profile at the start of each candidate.

    Returns:
        Cosine similarity (non-negative profiles give [0, 1]); 0.5 when either side is silent.
    """
    end_norm = float(np.linalg.norm(chroma_end))
    start_norm = np.linalg.norm(chroma_start, axis=1)
    cosine = chroma_start @ chroma_end / np.maximum(start_norm * end_norm, 1e-9)
    return np.where((start_norm > 1e-6) & (end_norm > 1e-6), cosine, 0.5)


def loudness_coherence(db_end: float, db_start: np.ndarray) -> np.ndarray:
    """Seam loudness smoothness (C,) in (0, 1]: exp(-|dB jump| / LOUDNESS_SCALE_DB)."""
    return np.exp(-np.abs(np.asarray(db_start, np.float64) - db_end) / LOUDNESS_SCALE_DB)


def rhythm_coherence(
    tempo: float,
    meter: int,
    tempo_start: np.ndarray,
    meter_start: np.ndarray,
    jitter_start: np.ndarray | None = None,
) -> np.ndarray:
    """Rhythmic fit across the seam (C,) in [0, 1]: tempo ratio, meter and beat confidence.

    A candidate within MAX_STRETCH of the query's tempo is stretched to it (so it scores as if
    it matched, less a small cost for the stretch); one further away scores by its tempo
    difference. Equal beats per bar keep the score, nested ones (2 and 4) lose a little, others
    halve it; a candidate with beat ``jitter_start`` (C,) loses by it (see JITTER_BEATS).
    Unknown tempo: 0.5.
    """
    tempo_start = np.asarray(tempo_start, np.float64)
    if tempo <= 0:
        return np.full(len(tempo_start), 0.5)
    jitter = np.zeros(len(tempo_start)) if jitter_start is None else np.asarray(jitter_start)
    ratio = np.abs(np.log(np.maximum(tempo_start, 1e-6) / tempo))
    stretchable = ratio <= np.log(MAX_STRETCH)
    stretched = 1.0 - 0.1 * ratio / np.log(MAX_STRETCH)  # a stretch costs at most 0.1
    score = np.where(stretchable, stretched, np.exp(-0.5 * (ratio / TEMPO_SIGMA) ** 2))
    meter_start = np.asarray(meter_start, np.int64)
    nested = (np.maximum(meter_start, meter) % np.maximum(np.minimum(meter_start, meter), 1)) == 0
    fit = np.where(meter_start == meter, 1.0, np.where(nested, METER_NESTED, METER_MISMATCH))
    score = score * fit * np.exp(-jitter / JITTER_BEATS)
    return np.where(tempo_start > 0, score, 0.5)


def coherence(parts: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """Weighted mean (C,) of the coherence parts (plain mean when their weights sum to 0)."""
    total = sum(weights[name] for name in COHERENCE_PARTS)
    if abs(total) < 1e-12:
        return np.mean([parts[name] for name in COHERENCE_PARTS], axis=0)
    return sum(weights[name] * parts[name] for name in COHERENCE_PARTS) / total


def composite(parts: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """Bankable composite score (C,): weighted sum of every part, so hops add up."""
    return sum(weights[name] * np.asarray(parts[name], np.float64) for name in PART_NAMES)
