"""Key finding and chord choice for single-line tunes that carry no chord symbols.

Chords are fitted per bar (per half bar in bars of four or more beats, when the halves clearly
want different chords) from the diatonic triads of the tune's key: the triad covering the most
melody time wins, notes on the downbeat count double, and I, IV and V get a small prior because
folk tunes lean on them.
"""

from __future__ import annotations

import numpy as np

from ensemble.corpus.arrangement import Note
from ensemble.corpus.score import Bar, ChordSpan

# Krumhansl–Kessler key profiles (probe-tone ratings), tonic first.
_MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
# Diatonic triads as (semitones above the tonic of the root, chord quality intervals, prior).
_MAJOR_TRIADS = ((0, (0, 4, 7), 0.3), (2, (0, 3, 7), 0.0), (4, (0, 3, 7), 0.0),
                 (5, (0, 4, 7), 0.2), (7, (0, 4, 7), 0.25), (9, (0, 3, 7), 0.05))  # fmt: skip
# Minor keys: harmonic-minor dominant (major V), natural-minor elsewhere.
_MINOR_TRIADS = ((0, (0, 3, 7), 0.3), (3, (0, 4, 7), 0.05), (5, (0, 3, 7), 0.2),
                 (7, (0, 4, 7), 0.25), (8, (0, 4, 7), 0.05), (10, (0, 4, 7), 0.05))  # fmt: skip
SPLIT_MARGIN = 0.25  # a half-bar chord change must explain this share more melody time

Triad = tuple[int, tuple[int, ...], float]  # root pitch class, pitch classes root first, prior


def pitch_class_weights(notes: list[Note], start: float, end: float) -> np.ndarray:
    """(12,) melody time per pitch class inside [start, end); a note on `start` counts double."""
    weights = np.zeros(12)
    for n in notes:
        overlap = min(n.start + n.duration, end) - max(n.start, start)
        if overlap > 0:
            weights[n.pitch % 12] += overlap * (2.0 if abs(n.start - start) < 1e-6 else 1.0)
    return weights


def estimate_key(notes: list[Note]) -> tuple[int, str]:
    """(tonic pitch class, "major" | "minor") of the notes' duration-weighted pitch classes."""
    hist = np.zeros(12)
    for n in notes:
        hist[n.pitch % 12] += n.duration
    return key_of_histogram(hist)


def key_of_histogram(hist: np.ndarray) -> tuple[int, str]:
    """(tonic pitch class, "major" | "minor") whose Krumhansl–Kessler profile correlates best
    with a (12,) pitch-class histogram."""
    best = (-2.0, 0, "major")
    for tonic in range(12):
        for mode, profile in (("major", _MAJOR_PROFILE), ("minor", _MINOR_PROFILE)):
            r = float(np.corrcoef(hist, np.roll(profile, tonic))[0, 1]) if hist.any() else 0.0
            best = max(best, (r, tonic, mode))
    return best[1], best[2]


def diatonic_triads(tonic: int, mode: str) -> list[Triad]:
    """[(root pitch class, pitch classes root first, prior)] of the key's usable triads."""
    table = _MAJOR_TRIADS if mode == "major" else _MINOR_TRIADS
    return [
        ((tonic + degree) % 12, tuple((tonic + degree + i) % 12 for i in quality), prior)
        for degree, quality, prior in table
    ]


def _best(weights: np.ndarray, triads: list[Triad]) -> tuple[float, int]:
    """Score and index of the triad that best explains the weighted pitch classes."""
    total = weights.sum()
    scores = [
        weights[list(pcs)].sum() - 0.5 * (total - weights[list(pcs)].sum()) + prior * total
        for _, pcs, prior in triads
    ]
    index = int(np.argmax(scores))
    return float(scores[index]), index


def fit_chords(melody: list[Note], bars: list[Bar], key: tuple[int, str]) -> list[ChordSpan]:
    """One diatonic triad per bar (two in long bars when it clearly helps); the pickup bar gets
    none, a bar without melody keeps the previous chord and the last bar is the tonic."""
    triads = diatonic_triads(*key)
    spans: list[ChordSpan] = []
    previous = 0  # the tonic triad
    for i, bar in enumerate(bars):
        if i == 0 and bar.is_pickup:
            continue
        end = bar.start + bar.length
        if i == len(bars) - 1:
            choices = [(bar.start, end, 0)]
        else:
            weights = pitch_class_weights(melody, bar.start, end)
            if weights.sum() == 0:
                choices = [(bar.start, end, previous)]
            else:
                whole_score, whole = _best(weights, triads)
                choices = [(bar.start, end, whole)]
                if bar.n_beats >= 4 and not bar.is_pickup:
                    middle = bar.start + bar.length / 2
                    first = _best(pitch_class_weights(melody, bar.start, middle), triads)
                    second = _best(pitch_class_weights(melody, middle, end), triads)
                    if first[1] != second[1] and (
                        first[0] + second[0] - whole_score > SPLIT_MARGIN * weights.sum()
                    ):
                        choices = [(bar.start, middle, first[1]), (middle, end, second[1])]
        for start, stop, index in choices:
            root, pcs, _ = triads[index]
            spans.append(ChordSpan(start, stop, root, pcs))
            previous = index
    return spans
