"""Write one `Part` as a single-track General MIDI file (what FluidSynth renders, and the
ground truth the loaders read back)."""

from __future__ import annotations

from pathlib import Path

from ensemble.corpus.arrangement import Part
from ensemble.data.midi import DRUM_CHANNEL

TICKS_PER_QUARTER = 480
MAIN_VOLUME = 100  # CC7; dynamics live in velocity and CC11


def write_part(path: Path, part: Part, bpm: float, end: float) -> Path:
    """Write `part` at `bpm` quarter notes per minute; the file ends at `end` quarter notes so
    every stem of a piece has the same length (the release tail is added when rendering)."""
    import mido

    channel = DRUM_CHANNEL if part.voice.is_drum else 0
    events: list[tuple[int, int, mido.Message]] = []  # (tick, order, message)

    def tick(quarters: float) -> int:
        return max(0, round(quarters * TICKS_PER_QUARTER))

    setup = [mido.Message("control_change", channel=channel, control=7, value=MAIN_VOLUME)]
    if not part.voice.is_drum:
        setup.insert(0, mido.Message("program_change", channel=channel, program=part.voice.program))
    events += [(0, 0, msg) for msg in setup]
    events += [
        (tick(t), 1, mido.Message("control_change", channel=channel, control=11, value=value))
        for t, value in part.expression
    ]
    for note in part.notes:
        on, off = tick(note.start), max(tick(note.start + note.duration), tick(note.start) + 1)
        # at equal ticks note-offs sort before note-ons, so a repeated pitch re-attacks
        events.append((off, 2, mido.Message("note_off", channel=channel, note=note.pitch)))
        events.append(
            (
                on,
                3,
                mido.Message("note_on", channel=channel, note=note.pitch, velocity=note.velocity),
            )
        )
    events.sort(key=lambda e: (e[0], e[1]))
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
    track.append(mido.MetaMessage("track_name", name=part.label, time=0))
    now = 0
    for t, _, msg in events:
        track.append(msg.copy(time=t - now))
        now = t
    track.append(mido.MetaMessage("end_of_track", time=max(0, tick(end) - now)))
    midi = mido.MidiFile(ticks_per_beat=TICKS_PER_QUARTER)
    midi.tracks.append(track)
    path.parent.mkdir(parents=True, exist_ok=True)
    midi.save(path)
    return path
