"""Key and chords of a performance input, on its beat grid.

The key comes from the Krumhansl–Kessler profiles (`ensemble.corpus.harmony`, which the corpus
renderer uses too) correlated with a pitch-class histogram that adds, to the melody's note
durations, the input's chroma (the harmony under the melody, when the input is a mix) and the
conductor's own pitch-class expectation for the accompaniment. Chords are diatonic triads of
that key, one per harmonic segment (a bar, or half a bar in bars of four beats), chosen by a
Viterbi pass that weighs how much of the melody and of the conductor's expectation each triad
explains, a small prior for I, IV and V, and a cost per change.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from ensemble.corpus.harmony import diatonic_triads, key_of_histogram
from ensemble.notes import NoteEvent, pitch_class_histogram

PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10, 11)  # natural minor plus the leading tone
CHORD_CHANGE_COST = 0.05  # share of a segment's weight a chord change must gain
OUT_OF_CHORD = 0.5  # melody time outside a triad counts against it at this rate
# The conductor's expectation counts as half a segment of melody: enough to settle ambiguous
# bars, not enough to hold the tonic under a melody that has moved on.
EXPECTED_SHARE = 0.5


@dataclass(frozen=True)
class Key:
    tonic: int  # pitch class 0..11
    mode: str  # "major" | "minor"

    @property
    def name(self) -> str:
        return f"{PITCH_NAMES[self.tonic]} {self.mode}"

    @property
    def scale(self) -> frozenset[int]:
        steps = MAJOR_SCALE if self.mode == "major" else MINOR_SCALE
        return frozenset((self.tonic + s) % 12 for s in steps)


@dataclass(frozen=True)
class Chord:
    """A triad held over frames [start, end)."""

    start: int
    end: int
    root: int
    pitch_classes: tuple[int, ...]  # root first


def estimate_key(
    notes: list[NoteEvent], chroma: np.ndarray | None = None, expected: np.ndarray | None = None
) -> Key:
    """The key of a melody's notes, helped by the input's chroma (12, T) and an expected
    accompaniment pitch-class mass (12,) (e.g. the conductor's), each scaled to the melody's
    total duration so the melody keeps half the say."""
    hist = pitch_class_histogram(notes)
    total = hist.sum() or 1.0
    for extra in (None if chroma is None else np.asarray(chroma).sum(axis=1), expected):
        if extra is not None and np.sum(extra) > 0:
            hist = hist + 0.5 * total * np.asarray(extra, np.float64) / np.sum(extra)
    return Key(*key_of_histogram(hist))


def harmonic_segments(downbeats: np.ndarray, beats_per_bar: int, n_frames: int) -> np.ndarray:
    """(S+1,) frame boundaries of the harmonic rhythm: bar lines, plus mid-bar in 4-beat bars.
    ``downbeats`` are frame positions."""
    bars = [round(d) for d in downbeats if 0 < d < n_frames]
    bounds = [0, *bars, n_frames]
    if beats_per_bar == 4:
        halves = [(a + b) // 2 for a, b in itertools.pairwise(bounds) if b - a > 8]
        bounds = sorted({*bounds, *halves})
    return np.asarray(bounds, dtype=np.int64)


def fit_chords(
    notes: list[NoteEvent], key: Key, bounds: np.ndarray, expected: np.ndarray | None = None
) -> list[Chord]:
    """One diatonic triad per segment ``bounds[i]:bounds[i+1]`` (frames).

    Args:
        notes: the melody.
        key: the piece's key.
        bounds: (S+1,) segment boundaries in frames.
        expected: optional (12, T) pitch-class mass the accompaniment is expected to play.

    Returns:
        Chords covering every segment (merged where the same triad continues).
    """
    triads = diatonic_triads(key.tonic, key.mode)
    n_seg = len(bounds) - 1
    weights = np.zeros((n_seg, 12))
    for note in notes:
        for s in range(n_seg):
            overlap = min(note.end, bounds[s + 1]) - max(note.start, bounds[s])
            if overlap > 0:
                on_start = abs(note.start - bounds[s]) <= 2
                weights[s, note.pitch % 12] += overlap * (2.0 if on_start else 1.0)
    if expected is not None:
        for s in range(n_seg):
            mass = np.asarray(expected)[:, bounds[s] : bounds[s + 1]].sum(axis=1)
            weights[s] += EXPECTED_SHARE * mass / (mass.sum() or 1.0) * (bounds[s + 1] - bounds[s])
    member = np.array([[pc in pcs for pc in range(12)] for _, pcs, _ in triads], dtype=float)
    prior = np.array([p for _, _, p in triads])
    totals = weights.sum(axis=1, keepdims=True)
    inside = weights @ member.T  # (S, K)
    score = inside - OUT_OF_CHORD * (totals - inside) + prior[None] * totals
    return _chord_path(score, totals[:, 0], triads, bounds)


def _chord_path(score, totals, triads, bounds) -> list[Chord]:
    """Viterbi over segments: best triad sequence with a cost per change; starts on the tonic
    when the first segment is empty (a pickup)."""
    n_seg, k = score.shape
    cost = CHORD_CHANGE_COST * np.maximum(totals, 1.0)
    best = score[0].copy()
    back = np.zeros((n_seg, k), dtype=np.int64)
    for s in range(1, n_seg):
        switch = best.max() - cost[s]
        stay = best >= switch
        back[s] = np.where(stay, np.arange(k), int(best.argmax()))
        best = np.maximum(best, switch) + score[s]
    path = [int(best.argmax())]
    for s in range(n_seg - 1, 0, -1):
        path.append(int(back[s, path[-1]]))
    path.reverse()
    chords: list[Chord] = []
    for s, index in enumerate(path):
        root, pcs, _ = triads[index]
        start, end = int(bounds[s]), int(bounds[s + 1])
        if chords and chords[-1].root == root and chords[-1].pitch_classes == pcs:
            chords[-1] = Chord(chords[-1].start, end, root, pcs)
        else:
            chords.append(Chord(start, end, root, pcs))
    return chords


def chord_name(chord: Chord) -> str:
    """"C", "Am", "G" ... (triads: minor when the third is three semitones up)."""
    third = (chord.pitch_classes[1] - chord.root) % 12 if len(chord.pitch_classes) > 1 else 4
    return PITCH_NAMES[chord.root] + ("m" if third == 3 else "")


def chord_frames(chords: list[Chord], n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(root (T,), chord-tone mask (T, 12)) per frame."""
    roots = np.zeros(n_frames, dtype=np.int64)
    tones = np.zeros((n_frames, 12), dtype=bool)
    for c in chords:
        roots[c.start : c.end] = c.root
        tones[c.start : c.end, list(c.pitch_classes)] = True
    return roots, tones
