"""Bach chorales and string quartets -> one stem per voice.

Chorales get a new instrumentation per piece (independent picks per voice, or a whole wind,
brass or string colour); quartets keep violin, violin, viola, cello. Both get a per-piece tempo,
transposition (chosen to keep every part in its instrument's range), dynamics scaling and
articulation. Quartet movements are cut to an excerpt starting at a random bar.
"""

from __future__ import annotations

import numpy as np

from ensemble.corpus.arrangement import (
    Arrangement,
    Part,
    choose_transposition,
    expression_curve,
    fit_range,
    monophonic,
    perform,
    transpose,
)
from ensemble.corpus.score import ScoreData, UnusableScore
from ensemble.corpus.sources import PieceRef
from ensemble.corpus.voices import CHORALE_CHOICES, CHORALE_ENSEMBLES, QUARTET, VOICES

CHORALE_LABELS = ("soprano", "alto", "tenor", "bass")
QUARTET_LABELS = ("violin 1", "violin 2", "viola", "cello")
MIN_LEADER_NOTES = 8
EXCERPT_TRIES = 5


def _require_four_parts(data: ScoreData, what: str) -> None:
    if len(data.parts) != 4 or any(not p for p in data.parts):
        raise UnusableScore(
            f"a {what} needs four non-empty parts, this score has {len(data.parts)}"
        )


def _arrange(
    ref: PieceRef,
    data: ScoreData,
    rng: np.random.Generator,
    names: tuple[str, ...],
    labels: tuple[str, ...],
    bpm: float,
    span: int,
) -> Arrangement:
    voices = [VOICES[name] for name in names]
    last = len(data.parts) - 1  # the bass part keeps the lowest note of its double stops
    lines = [monophonic(notes, top=k != last) for k, notes in enumerate(data.parts)]
    shift = choose_transposition(rng, list(zip(lines, voices, strict=True)), span)
    gain = float(rng.uniform(0.75, 1.25))
    articulation = float(rng.uniform(0.85, 0.98))
    downbeats = np.array([b.start for b in data.bars])
    phrase = 2 * data.bars[-1].full
    parts = []
    for k, (notes, voice, label) in enumerate(zip(lines, voices, labels, strict=True)):
        fitted = fit_range(transpose(notes, shift), voice)
        parts.append(
            Part(
                label,
                voice,
                perform(
                    fitted,
                    rng,
                    gain=gain,
                    offset=6 if k == 0 else 0,
                    downbeats=downbeats,
                    articulation=articulation,
                ),
                role="leader" if k == 0 else "follower",
                expression=expression_curve(rng, data.length, phrase),
            )
        )
    return Arrangement.of(ref.kind, ref, data, bpm, shift, parts)


def arrange_chorale(
    ref: PieceRef, data: ScoreData, rng: np.random.Generator, max_seconds: float
) -> Arrangement:
    """Four voices on four instruments; long chorales end at the last bar that fits."""
    _require_four_parts(data, "chorale")
    bpm = float(rng.uniform(56, 92))
    data = data.excerpt(0, max_seconds * bpm / 60.0)
    if rng.random() < 0.35:
        names = CHORALE_ENSEMBLES[int(rng.integers(len(CHORALE_ENSEMBLES)))]
    else:
        names = tuple(str(rng.choice(CHORALE_CHOICES[label])) for label in CHORALE_LABELS)
    return _arrange(ref, data, rng, names, CHORALE_LABELS, bpm, span=5)


def arrange_quartet(
    ref: PieceRef, data: ScoreData, rng: np.random.Generator, max_seconds: float
) -> Arrangement:
    """A bar-aligned excerpt of 75-100% of `max_seconds` at (about) the marked tempo."""
    _require_four_parts(data, "string quartet")
    marked = data.tempo * rng.uniform(0.9, 1.1) if data.tempo else rng.uniform(72, 132)
    bpm = float(np.clip(marked, 50, 168))
    window = max_seconds * rng.uniform(0.75, 1.0) * bpm / 60.0
    starts = [i for i, b in enumerate(data.bars) if b.start + window <= data.length] or [0]
    for _ in range(EXCERPT_TRIES):
        excerpt = data.excerpt(int(rng.choice(starts)), window)
        if len(excerpt.parts[0]) >= MIN_LEADER_NOTES and all(excerpt.parts):
            return _arrange(ref, excerpt, rng, QUARTET, QUARTET_LABELS, bpm, span=2)
    raise UnusableScore("no excerpt of this movement has all four parts playing")
