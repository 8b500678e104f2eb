"""Scores without audio (Essen ``**kern`` .krn, ABC, MusicXML) for the symbolic validation path.

Each part becomes a StemExample with ``audio=None``: f0 from its notes on the project frame grid
(played at the score's first metronome mark, else DEFAULT_BPM) and a loudness curve from the
notes' velocities, which follow the written dynamics (mf without any). An ABC file holding many
tunes (the Essen collections) yields one track per tune.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ensemble.config import FRAME_RATE
from ensemble.data.example import StemExample, TrackRef
from ensemble.data.instruments import canonical_from_text
from ensemble.data.midi import TimedNote, notes_end, notes_to_frames, pitch_to_hz
from ensemble.data.splits import read_splits
from ensemble.errors import DataError

SUFFIXES = (".krn", ".abc", ".mxl", ".musicxml", ".xml")
DEFAULT_BPM = 100.0
TAIL_S = 0.5  # silence after the last note, as a rendering would have
# Velocity -> A-weighted loudness (ensemble.features scale): a least-squares line through 0.5 M
# voiced frames of the monophonic stems of a 40-piece render (bench/corpus.py prints the fit).
LOUDNESS_AT_VELOCITY_0 = -57.3
LOUDNESS_PER_VELOCITY = 0.25
SILENCE_DB = -100.0


def is_symbolic(root: Path) -> bool:
    """Whether `root` is a score file or a folder holding some."""
    if root.is_file():
        return root.suffix.lower() in SUFFIXES
    return any(p.suffix.lower() in SUFFIXES for p in root.rglob("*") if p.is_file())


def _tune_numbers(path: Path) -> list[int | None]:
    if path.suffix.lower() != ".abc":
        return [None]
    text = path.read_text(encoding="utf-8", errors="replace")
    numbers = [int(n) for n in re.findall(r"^X:\s*(\d+)", text, flags=re.MULTILINE)]
    return list(dict.fromkeys(numbers)) if len(numbers) > 1 else [None]


def list_symbolic(root: Path) -> list[TrackRef]:
    """One track per score file, or per tune of a multi-tune ABC file (track id "<file>-<X>")."""
    files = (
        [root]
        if root.is_file()
        else sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    )
    splits = read_splits(root if root.is_dir() else root.parent)
    refs = []
    for path in files:
        for number in _tune_numbers(path):
            track = path.stem if number is None else f"{path.stem}-{number}"
            refs.append(TrackRef("symbolic", track, splits.get(track), path, number))
    return refs


def velocity_to_loudness(velocity: np.ndarray) -> np.ndarray:
    """(T,) velocities (0 = silent) -> dB on the A-weighted loudness scale of rendered audio."""
    velocity = np.asarray(velocity, np.float32)
    db = LOUDNESS_AT_VELOCITY_0 + LOUDNESS_PER_VELOCITY * velocity
    return np.where(velocity > 0, db, SILENCE_DB).astype(np.float32)


def load_symbolic_track(ref: TrackRef) -> list[StemExample]:
    """One StemExample per part of the score (the first part is the leader).

    Raises:
        DataError: the file cannot be parsed or has no notes.
    """
    from music21 import converter

    from ensemble.corpus.score import UnusableScore, score_data

    try:
        # forceSource: no pickle cache in the shared temp folder (see corpus.sources).
        score = converter.parse(ref.path, number=ref.number, forceSource=True)
        data = score_data(score, require_meter=False)
    except UnusableScore as exc:
        raise DataError(f"'{ref.path.name}' cannot be used: {exc}") from exc
    except Exception as exc:  # music21's parsers raise many exception types on bad input
        raise DataError(
            f"'{ref.path.name}' cannot be parsed ({type(exc).__name__}: {exc})"
        ) from exc
    bpm = data.tempo or DEFAULT_BPM
    seconds = 60.0 / bpm
    parts = [
        [TimedNote(n.start * seconds, (n.start + n.duration) * seconds, n.pitch, n.velocity)
         for n in notes]
        for notes in data.parts
    ]  # fmt: skip
    if not any(parts):
        raise DataError(f"'{ref.path.name}' has no notes")
    n_frames = int(np.ceil((max(notes_end(p) for p in parts) + TAIL_S) * FRAME_RATE))
    examples = []
    for k, (notes, name) in enumerate(zip(parts, data.part_names, strict=True)):
        pitch, velocity = notes_to_frames(notes, n_frames)
        examples.append(
            StemExample(
                track=ref.track,
                stem=f"S{k:02d}",
                instrument=canonical_from_text(name) or "unknown",
                is_drum=False,
                role="leader" if k == 0 else "follower",
                split=ref.split,
                audio=None,
                f0_hz=pitch_to_hz(pitch),
                loudness_db=velocity_to_loudness(velocity),
                f0_source="midi",
            )
        )
    return examples
