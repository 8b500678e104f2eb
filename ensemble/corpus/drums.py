"""A General MIDI drum part (channel 10) that follows the tune's bars and meter.

Groove: kick on the strong beats, snare on the back beats (soft on 2 and 3 in triple time),
hi-hat or ride on the beat subdivisions (eighths, or triplet eighths in compound meters), a crash
after every fill. Every 4 or 8 bars the last beat or two become a snare/tom fill now and then.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ensemble.corpus.arrangement import Note
from ensemble.corpus.score import Bar

KICK, SNARE, CLOSED_HAT, CRASH, RIDE = 36, 38, 42, 49, 51
TOMS = (50, 48, 47, 45, 43, 41)  # high to low
HIT = 0.25  # quarter notes; drum samples ring out on their own, the length only needs to be > 0


@dataclass(frozen=True)
class DrumStyle:
    """Per-piece choices that make grooves differ between tracks."""

    cymbal: int  # CLOSED_HAT or RIDE
    every_subdivision: bool  # cymbal on each subdivision (eighths) or only on beats
    phrase: int  # bars between fills
    fill_chance: float
    extra_kick: bool  # kick on the last subdivision before the second half of the bar

    @classmethod
    def draw(cls, rng: np.random.Generator) -> DrumStyle:
        return cls(
            cymbal=int(rng.choice([CLOSED_HAT, CLOSED_HAT, RIDE])),
            every_subdivision=bool(rng.random() < 0.75),
            phrase=int(rng.choice([4, 8])),
            fill_chance=float(rng.uniform(0.5, 0.9)),
            extra_kick=bool(rng.random() < 0.4),
        )


def _subdivisions(bar: Bar) -> int:
    return 3 if abs(bar.beat - 1.5) < 1e-6 else 2  # compound meters swing in threes


def _groove(bar: Bar, style: DrumStyle) -> list[tuple[float, int, float]]:
    """(time within bar, drum key, level 0..1) of one bar's groove."""
    n, sub = bar.n_beats, _subdivisions(bar)
    step = bar.beat / sub
    hits: list[tuple[float, int, float]] = []
    for beat in range(n):
        t = beat * bar.beat
        if beat == 0 or (n >= 4 and beat == n // 2):
            hits.append((t, KICK, 0.9))
        if n == 3 and beat > 0:
            hits.append((t, SNARE, 0.45))  # waltz: light snare on 2 and 3
        elif n != 3 and beat % 2 == 1:
            hits.append((t, SNARE, 0.85))
        for s in range(sub if style.every_subdivision else 1):
            level = 0.7 if s == 0 else 0.5
            hits.append((t + s * step, style.cymbal, level))
    if style.extra_kick and n >= 2:
        hits.append(((n // 2) * bar.beat - step, KICK, 0.7))
    return hits


def _fill(bar: Bar, rng: np.random.Generator) -> tuple[float, list[tuple[float, int, float]]]:
    """(fill start within bar, hits): the last one or two beats as snare/tom runs."""
    beats = 2 if bar.n_beats >= 4 and rng.random() < 0.5 else 1
    start = bar.full - beats * bar.beat
    per_beat = 3 if _subdivisions(bar) == 3 else 4
    count = beats * per_beat
    step = bar.beat / per_beat
    drums = [SNARE] * (count // 2) + [
        TOMS[i * len(TOMS) // count] for i in range(count // 2, count)
    ]
    if rng.random() < 0.5:
        drums = [SNARE] * count
    hits = [(start + i * step, d, 0.6 + 0.35 * i / count) for i, d in enumerate(drums)]
    return start, hits


def drum_part(
    bars: list[Bar], rng: np.random.Generator, style: DrumStyle, gain: float = 1.0
) -> list[Note]:
    """Drum notes for `bars` (the pickup bar stays silent; the last bar is one crash + kick)."""
    hits: list[tuple[float, int, float]] = []
    counted = 0  # full bars so far, to place fills at phrase ends
    crash_next = True
    for i, bar in enumerate(bars):
        if bar.is_pickup and i == 0:
            continue
        if i == len(bars) - 1:
            hits += [(bar.start, CRASH, 0.9), (bar.start, KICK, 0.9)]
            break
        groove = [h for h in _groove(bar, style) if h[0] < bar.length - 1e-6]
        counted += 1
        fill_here = (
            counted % style.phrase == 0 and not bar.is_pickup and rng.random() < style.fill_chance
        )
        if fill_here:
            fill_start, fill = _fill(bar, rng)
            groove = [h for h in groove if h[0] < fill_start - 1e-6] + fill
        if crash_next:  # the crash replaces the downbeat cymbal
            groove = [h for h in groove if h[0] > 0 or h[1] == KICK] + [(0.0, CRASH, 0.85)]
        crash_next = fill_here
        hits += [(bar.start + t, key, level) for t, key, level in groove]
    notes = []
    for t, key, level in sorted(hits):
        velocity = level * 118 * gain + rng.normal(0.0, 5.0)
        notes.append(Note(t, HIT, key, int(np.clip(round(velocity), 20, 127))))
    return notes
