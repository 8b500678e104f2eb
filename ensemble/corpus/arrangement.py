"""The renderer's score model (notes in quarter notes, one tempo) and the shared performance
touches every arranger applies: transposition within range, dynamics, accents, articulation and
a slow expression (CC11) curve.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from ensemble.corpus.voices import Voice

if TYPE_CHECKING:
    from ensemble.corpus.score import Bar, ScoreData
    from ensemble.corpus.sources import PieceRef


@dataclass(frozen=True)
class Note:
    """One note; times in quarter notes from the piece start."""

    start: float
    duration: float
    pitch: int  # MIDI note number (GM drum key for drum parts)
    velocity: int  # 1..127


@dataclass
class Part:
    """One stem to render."""

    label: str  # what the part plays: "soprano", "violin 1", "lead", "bass", "comping", "drums"
    voice: Voice
    notes: list[Note]
    role: str = "follower"  # "leader" for the melody part
    expression: list[tuple[float, int]] = field(default_factory=list)  # (quarter note, CC11)


@dataclass
class Arrangement:
    """A piece ready to write as MIDI: parts, one tempo, and provenance for metadata.yaml."""

    kind: str  # chorale | quartet | folk
    source: str  # corpus reference, e.g. "bach/bwv10.7.mxl"
    group: str  # pieces sharing a group go to one split
    title: str
    bpm: float  # quarter notes per minute
    length: float  # quarter notes
    transpose: int  # semitones applied to the score
    meter: str  # e.g. "4/4"
    parts: list[Part]
    bars: list[Bar] = field(default_factory=list)  # the score's measures (quarter notes)

    @classmethod
    def of(
        cls, kind: str, ref: PieceRef, data: ScoreData, bpm: float, shift: int, parts: list[Part]
    ) -> Arrangement:
        """An arrangement of the parsed score ``data`` of ``ref`` with its provenance."""
        return cls(
            kind=kind,
            source=ref.name,
            group=ref.group,
            title=data.title,
            bpm=bpm,
            length=data.length,
            transpose=shift,
            meter=data.meter,
            parts=parts,
            bars=list(data.bars),
        )

    def seconds(self, quarters: float) -> float:
        return quarters * 60.0 / self.bpm

    @property
    def duration_s(self) -> float:
        return self.seconds(self.length)

    def beat_grid(self) -> tuple[list[float], list[float]]:
        """(beat times, downbeat times) in seconds, exact from the score's bars.

        A short bar followed by a full one is an anacrusis: it holds the last beats of a bar, so
        its beats are counted back from its end and it has no downbeat. A short bar at the end
        of a tune (before a repeat's anacrusis, or last) starts with its downbeat.
        """
        beats: list[float] = []
        downbeats: list[float] = []
        for i, bar in enumerate(self.bars):
            end = min(bar.start + bar.length, self.length)
            following = self.bars[i + 1] if i + 1 < len(self.bars) else None
            if bar.is_pickup and following is not None and not following.is_pickup:
                first = end - bar.beat * int((bar.length + 1e-6) // bar.beat)
            else:
                first = bar.start
                downbeats.append(self.seconds(bar.start))
            k = 0
            while first + k * bar.beat < end - 1e-6:
                beats.append(self.seconds(first + k * bar.beat))
                k += 1
        return beats, [t for t in downbeats if t < self.duration_s]


def monophonic(notes: list[Note], top: bool = True) -> list[Note]:
    """One line from a part with chords or divided voices: at each onset keep the highest (or
    lowest) note and cut every note where the next kept one starts. Specialist decoders are
    monophonic, so a stem must be one line for its MIDI f0 to describe its audio."""
    ordered = sorted(notes, key=lambda n: (n.start, -n.pitch if top else n.pitch))
    line = [n for i, n in enumerate(ordered) if i == 0 or n.start > ordered[i - 1].start + 1e-6]
    return [
        replace(n, duration=min(n.duration, line[i + 1].start - n.start))
        if i + 1 < len(line)
        else n
        for i, n in enumerate(line)
    ]


def out_of_range(notes: list[Note], voice: Voice, shift: int = 0) -> int:
    """How many notes fall outside the voice's range after shifting by `shift` semitones."""
    return sum(not voice.low <= n.pitch + shift <= voice.high for n in notes)


def choose_transposition(
    rng: np.random.Generator, parts: list[tuple[list[Note], Voice]], span: int = 5
) -> int:
    """A random transposition in [-span, span] among those that keep the most notes in range."""
    shifts = np.arange(-span, span + 1)
    misses = np.array([sum(out_of_range(n, v, int(s)) for n, v in parts) for s in shifts])
    best = shifts[misses == misses.min()]
    return int(rng.choice(best))


def fit_range(notes: list[Note], voice: Voice) -> list[Note]:
    """Move a part by whole octaves into the voice's range; fold any remaining stray notes."""
    if not notes:
        return notes
    octave = min(range(-3, 4), key=lambda k: (out_of_range(notes, voice, 12 * k), abs(k)))
    fitted = []
    for n in notes:
        pitch = n.pitch + 12 * octave
        while pitch < voice.low:
            pitch += 12
        while pitch > voice.high:
            pitch -= 12
        fitted.append(replace(n, pitch=pitch))
    return fitted


def transpose(notes: list[Note], semitones: int) -> list[Note]:
    return [replace(n, pitch=n.pitch + semitones) for n in notes]


def perform(
    notes: list[Note],
    rng: np.random.Generator,
    *,
    gain: float,
    offset: float = 0.0,
    downbeats: np.ndarray | None = None,
    articulation: float = 0.95,
) -> list[Note]:
    """Humanised velocities and articulation.

    Args:
        notes: written notes (velocity = 127 x written dynamic level).
        gain: per-piece loudness scaling of the written dynamics (0.7..1.3 typical).
        offset: per-part velocity offset (melody louder, accompaniment softer).
        downbeats: (B,) bar start times; notes starting on one get a small accent.
        articulation: fraction of the written duration that sounds, so repeated notes re-attack.
    """
    beats = np.asarray(downbeats if downbeats is not None else [], np.float64)
    out = []
    for n in notes:
        accent = 6.0 if beats.size and np.min(np.abs(beats - n.start)) < 1e-3 else 0.0
        velocity = n.velocity * gain + offset + accent + rng.normal(0.0, 4.0)
        duration = max(n.duration * articulation, min(n.duration, 0.08))
        out.append(replace(n, velocity=int(np.clip(round(velocity), 20, 127)), duration=duration))
    return out


def expression_curve(
    rng: np.random.Generator, length: float, step: float, low: int = 80
) -> list[tuple[float, int]]:
    """A slow CC11 (expression) curve: random levels every `step` quarter notes, interpolated on
    a quarter-note grid; phrasing swells that MIDI velocity alone cannot give sustained notes."""
    anchors_t = np.arange(0.0, length + step, step)
    anchors_v = rng.uniform(low, 127, size=len(anchors_t))
    grid = np.arange(0.0, length, 1.0)
    values = np.interp(grid, anchors_t, anchors_v)
    return [(float(t), round(float(v))) for t, v in zip(grid, values, strict=True)]
