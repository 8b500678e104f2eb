"""The performed arrangement as a Standard MIDI File: a score to take into a DAW or notation tool.

One track per instrument with its General MIDI program (drums on channel 10): the leader's notes
segmented from the pitch track it played (`ensemble.notes`), the followers' notes as the
conductor decoded them, the drums' hits from their loudness curve (kick on the bar line, snare on
the other beats, closed hi-hat between them). Tempo and time signature come from the beat
tracker; note times are the audio's, so the file lines up with `mix.wav` from its first sample.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ensemble.config import FRAME_RATE
from ensemble.data.instruments import program_for
from ensemble.data.midi import DRUM_CHANNEL
from ensemble.features import hz_to_midi
from ensemble.notes import NoteEvent, segment_notes

if TYPE_CHECKING:
    from ensemble.perform import Performance
    from ensemble.rhythm import BeatGrid

TICKS_PER_QUARTER = 480
KICK, SNARE, CLOSED_HAT = 36, 38, 42
VELOCITY_FLOOR_DB = -80.0  # loudness mapped linearly onto velocities 1..127 above this


def velocity(loudness_db: float) -> int:
    """MIDI velocity of a note attacked at ``loudness_db``."""
    return int(np.clip(round((loudness_db - VELOCITY_FLOOR_DB) / 70.0 * 127), 1, 127))


def part_notes(performance: Performance) -> dict[str, list[NoteEvent]]:
    """Notes of every pitched stem of a performance (drums left out)."""
    out = {}
    for name, part in performance.parts.items():
        if part.f0_hz is not None:
            out[name] = segment_notes(hz_to_midi(part.f0_hz), part.voiced, part.loudness_db)
    return out


def drum_notes(loudness_db: np.ndarray, grid: BeatGrid) -> list[NoteEvent]:
    """GM drum hits at the attacks of a drum loudness curve, the key chosen by metrical place."""
    from ensemble.conductor import detect_onsets

    beats = np.round(grid.beats * FRAME_RATE).astype(int)
    downbeats = set(np.round(grid.downbeats * FRAME_RATE).astype(int).tolist())
    notes = []
    for frame in detect_onsets(loudness_db).tolist():
        nearest = int(beats[np.argmin(np.abs(beats - frame))]) if len(beats) else -99
        on_beat = abs(nearest - frame) <= 3
        key = KICK if on_beat and nearest in downbeats else SNARE if on_beat else CLOSED_HAT
        notes.append(NoteEvent(frame, frame + 10, key, float(loudness_db[frame])))
    return notes


def time_signature(grid: BeatGrid) -> tuple[int, int]:
    """(numerator, denominator): n/4 for simple meters, 3n/8 for compound ones."""
    if grid.subdivisions == 3:
        return 3 * grid.beats_per_bar, 8
    return grid.beats_per_bar, 4


def write_arrangement_midi(path: str | Path, performance: Performance) -> Path:
    """Write ``performance`` as a type-1 MIDI file at ``path``; returns the path."""
    import mido

    grid = performance.grid
    quarter_bpm = grid.tempo_bpm * (1.5 if grid.subdivisions == 3 else 1.0)

    def tick(frame: int) -> int:
        return round(frame / FRAME_RATE * quarter_bpm / 60.0 * TICKS_PER_QUARTER)

    numerator, denominator = time_signature(grid)
    conductor = mido.MidiTrack()
    conductor.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(quarter_bpm)))
    conductor.append(
        mido.MetaMessage("time_signature", numerator=numerator, denominator=denominator)
    )
    if performance.context is not None:
        conductor.append(mido.MetaMessage("marker", text=f"key: {performance.context.key.name}"))
    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_QUARTER)
    midi.tracks.append(conductor)
    pitched = part_notes(performance)
    channel = 0
    for name, part in performance.parts.items():
        if name in pitched:
            notes, ch = pitched[name], channel
            channel += 1 + (channel + 1 == DRUM_CHANNEL)  # channel 10 is the drums'
        else:
            notes, ch = drum_notes(part.loudness_db, grid), DRUM_CHANNEL
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("track_name", name=name))
        if ch != DRUM_CHANNEL:
            track.append(mido.Message("program_change", channel=ch, program=program_for(name)))
        events = []
        for note in notes:
            loud = velocity(note.loudness_db)
            on = mido.Message("note_on", channel=ch, note=note.pitch, velocity=loud)
            off = mido.Message("note_off", channel=ch, note=note.pitch)
            # note-offs sort before note-ons at equal ticks, so repeated pitches re-attack
            events += [(tick(note.end), 0, off), (tick(note.start), 1, on)]
        now = 0
        for t, _, message in sorted(events, key=lambda e: (e[0], e[1])):
            track.append(message.copy(time=t - now))
            now = t
        midi.tracks.append(track)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    midi.save(out)
    return out
