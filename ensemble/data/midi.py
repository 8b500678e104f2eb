"""Frame-rate pitch ground truth from note lists and MIDI files.

Frame ``j`` is centred at ``j / FRAME_RATE`` seconds (the grid of `ensemble.features`); a note
covers the frames whose centre lies in ``[start, end)``. Where notes overlap (chords, double
stops) the highest one is the f0: for comping and piano stems that is the top voice, the line a
listener follows.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ensemble.config import FRAME_RATE
from ensemble.errors import DataError

DRUM_CHANNEL = 9  # GM channel 10, zero-based


@dataclass(frozen=True)
class TimedNote:
    """One sounding note in seconds."""

    start: float
    end: float
    pitch: int  # MIDI note number
    velocity: int  # 1..127


def read_midi_notes(path: str | Path) -> list[TimedNote]:
    """Pitched notes of a MIDI file in seconds (tempo map applied), all tracks merged; GM
    channel-10 (drum) notes are left out.

    Raises:
        DataError: the file is missing or not a readable MIDI file.
    """
    import mido

    path = Path(path)
    try:
        midi = mido.MidiFile(path)
        messages = list(midi)  # iterating a MidiFile yields delta times in seconds
    except (OSError, EOFError, ValueError, KeyError, IndexError) as exc:
        raise DataError(f"MIDI file '{path}' cannot be read ({exc}).") from exc
    now = 0.0
    open_notes: dict[tuple[int, int], deque[tuple[float, int]]] = defaultdict(deque)
    notes: list[TimedNote] = []
    for msg in messages:
        now += msg.time
        if msg.type not in ("note_on", "note_off") or msg.channel == DRUM_CHANNEL:
            continue
        key = (msg.channel, msg.note)
        if msg.type == "note_on" and msg.velocity > 0:
            open_notes[key].append((now, msg.velocity))
        elif open_notes[key]:
            start, velocity = open_notes[key].popleft()
            notes.append(TimedNote(start, now, msg.note, velocity))
    for (_, pitch), pending in open_notes.items():  # notes never released end with the file
        notes.extend(TimedNote(start, now, pitch, velocity) for start, velocity in pending)
    return notes


def notes_to_frames(notes: list[TimedNote], n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Highest sounding MIDI pitch and its velocity per frame.

    Returns:
        pitch (T,) float32 (0 where silent) and velocity (T,) float32 (0 where silent).
    """
    pitch = np.zeros(n_frames, np.float32)
    velocity = np.zeros(n_frames, np.float32)
    for note in sorted(notes, key=lambda n: n.pitch):  # higher pitches overwrite lower ones
        first = max(int(np.ceil(note.start * FRAME_RATE)), 0)
        stop = min(int(np.ceil(note.end * FRAME_RATE)), n_frames)
        pitch[first:stop] = note.pitch
        velocity[first:stop] = note.velocity
    return pitch, velocity


def pitch_to_hz(pitch: np.ndarray) -> np.ndarray:
    """(T,) MIDI pitches -> Hz, keeping 0 for silent frames."""
    pitch = np.asarray(pitch, np.float64)
    return np.where(pitch > 0, 440.0 * 2.0 ** ((pitch - 69.0) / 12.0), 0.0).astype(np.float32)


def notes_end(notes: list[TimedNote]) -> float:
    """Time in seconds when the last note ends (0 for no notes)."""
    return max((n.end for n in notes), default=0.0)


def midi_f0(path: str | Path, n_frames: int | None = None) -> np.ndarray:
    """(T,) f0 in Hz of a pitched MIDI stem, 0 where no note sounds.

    ``n_frames`` defaults to the frames up to the last note-off.
    """
    notes = read_midi_notes(path)
    if n_frames is None:
        n_frames = int(np.ceil(notes_end(notes) * FRAME_RATE))
    return pitch_to_hz(notes_to_frames(notes, n_frames)[0])
