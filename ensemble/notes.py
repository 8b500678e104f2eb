"""Notes from a pitch track: the leader's line as discrete events (key, chords, beats, MIDI).

A note is a run of voiced frames whose rounded MIDI pitch holds still for at least
`MIN_NOTE_FRAMES`; vibrato and slides shorter than that stay inside the note they decorate. A
loudness re-attack (a fresh rise on the same pitch: a repeated note) also starts a new note.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ensemble.config import FRAME_RATE

MIN_NOTE_FRAMES = 6  # 60 ms: shorter pitch excursions are ornaments, not notes
REATTACK_DB = 6.0  # a 30 ms loudness rise of this much on a held pitch is a repeated note


@dataclass(frozen=True)
class NoteEvent:
    """One note on the frame grid: frames [start, end), MIDI pitch, loudness at its attack."""

    start: int
    end: int
    pitch: int
    loudness_db: float

    @property
    def start_s(self) -> float:
        return self.start / FRAME_RATE

    @property
    def duration_s(self) -> float:
        return (self.end - self.start) / FRAME_RATE


def _runs(values: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) runs of equal values in a (T,) int array."""
    if len(values) == 0:
        return []
    edges = np.flatnonzero(np.diff(values)) + 1
    bounds = np.concatenate([[0], edges, [len(values)]])
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))


def segment_notes(
    midi: np.ndarray, voiced: np.ndarray, loudness_db: np.ndarray
) -> list[NoteEvent]:
    """Notes of a monophonic line.

    Args:
        midi: (T,) fractional MIDI pitch (any value where unvoiced).
        voiced: (T,) bool.
        loudness_db: (T,) loudness in dB (for re-attacks of a repeated pitch).

    Returns:
        Notes in time order, non-overlapping.
    """
    midi = np.asarray(midi, np.float64)
    # -1 marks rests; a median over 50 ms removes single-frame tracker flips between notes.
    rounded = np.where(voiced, np.round(midi), -1).astype(np.int64)
    padded = np.pad(rounded, 2, mode="edge")
    rounded = np.median(np.lib.stride_tricks.sliding_window_view(padded, 5), axis=1).astype(
        np.int64
    )
    # Absorb runs shorter than a note into their longer neighbour (ornaments, glides).
    runs = _runs(rounded)
    for i, (a, b) in enumerate(runs):
        if b - a < MIN_NOTE_FRAMES and rounded[a] >= 0:
            left = rounded[runs[i - 1][0]] if i > 0 else -1
            right = rounded[runs[i + 1][0]] if i + 1 < len(runs) else -1
            rounded[a:b] = left if left >= 0 else right
    loud = np.asarray(loudness_db, np.float64)
    rise = loudness_rise(loud)
    notes: list[NoteEvent] = []
    for a, b in _runs(rounded):
        pitch = int(rounded[a])
        if pitch < 0 or b - a < MIN_NOTE_FRAMES:
            continue
        cuts = [a]
        for t in np.flatnonzero(rise[a + MIN_NOTE_FRAMES : b - MIN_NOTE_FRAMES] >= REATTACK_DB):
            frame = int(t) + a + MIN_NOTE_FRAMES
            if frame - cuts[-1] >= MIN_NOTE_FRAMES:
                cuts.append(frame)
        for start, end in zip(cuts, [*cuts[1:], b], strict=True):
            notes.append(NoteEvent(start, end, pitch, float(loud[start])))
    return notes


def loudness_rise(loudness_db: np.ndarray) -> np.ndarray:
    """(T,) dB gained over the previous 30 ms (the first frame held before the start): where
    attacks are, for note re-attacks and the beat tracker's novelty alike."""
    loud = np.asarray(loudness_db, np.float64)
    if len(loud) == 0:
        return loud.copy()
    return loud - np.concatenate([np.full(3, loud[0]), loud[:-3]])[: len(loud)]


def pitch_class_histogram(notes: list[NoteEvent]) -> np.ndarray:
    """(12,) total duration in seconds of each pitch class."""
    hist = np.zeros(12)
    for n in notes:
        hist[n.pitch % 12] += n.duration_s
    return hist
