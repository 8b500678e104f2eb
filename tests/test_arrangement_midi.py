"""`perform --midi`: the arrangement as a MIDI file whose leader track matches the melody played."""

from __future__ import annotations

from pathlib import Path

import mido
import numpy as np

from ensemble.arrangement_midi import time_signature, velocity, write_arrangement_midi
from ensemble.config import SAMPLE_RATE
from ensemble.features import midi_to_hz
from ensemble.perform import Ensemble, PerformSettings
from ensemble.rhythm import BeatGrid, f_measure
from tests.test_perform import checkpoints  # noqa: F401  (the shared tiny-checkpoint fixture)

# (onset s, duration s, MIDI pitch): a tune with steps, leaps and a repeated note.
TUNE = [(0.0, 0.4, 67), (0.4, 0.4, 69), (0.8, 0.4, 71), (1.2, 0.8, 72), (2.0, 0.4, 72),
        (2.4, 0.4, 76), (2.8, 0.4, 74), (3.2, 0.8, 71), (4.0, 0.4, 67), (4.4, 1.0, 69)]  # fmt: skip


def sing(tune: list[tuple[float, float, int]]) -> np.ndarray:
    """A clean monophonic line: harmonic tones with a short attack and a gap before each note."""
    end = max(t + d for t, d, _ in tune) + 0.3
    audio = np.zeros(int(end * SAMPLE_RATE), np.float32)
    for start, duration, pitch in tune:
        n = int((duration - 0.03) * SAMPLE_RATE)
        t = np.arange(n) / SAMPLE_RATE
        tone = sum(np.sin(2 * np.pi * midi_to_hz(pitch) * h * t) / h for h in (1, 2, 3))
        env = np.minimum(1.0, t / 0.01) * np.minimum(1.0, (t[-1] - t) / 0.01 + 1e-3)
        first = int(start * SAMPLE_RATE)
        audio[first : first + n] += 0.3 * tone * env
    return audio


def leader_track(path: Path, name: str) -> list[tuple[float, int]]:
    """(onset s, pitch) of the named track's notes."""
    midi = mido.MidiFile(path)
    tempo = next(m.tempo for m in midi.tracks[0] if m.type == "set_tempo")
    track = next(t for t in midi.tracks if any(m.type == "track_name" and m.name == name
                                               for m in t))  # fmt: skip
    now, out = 0, []
    for message in track:
        now += message.time
        if message.type == "note_on" and message.velocity > 0:
            out.append((mido.tick2second(now, midi.ticks_per_beat, tempo), message.note))
    return out


def test_leader_track_matches_a_clean_melody(checkpoints: Path, tmp_path: Path) -> None:  # noqa: F811
    settings = PerformSettings(auto_adjust=False)
    perf = Ensemble.from_pretrained(checkpoints).perform(
        sing(TUNE), ["violin", "cello", "drums"], settings=settings
    )
    path = write_arrangement_midi(tmp_path / "arrangement.mid", perf)
    played = leader_track(path, "violin")
    hits = 0
    for onset, pitch in played:  # one-to-one: a played note matches one tune note
        if any(abs(onset - t) <= 0.05 and pitch == p for t, _, p in TUNE):
            hits += 1
    precision, recall = hits / max(len(played), 1), hits / len(TUNE)
    assert 2 * precision * recall / max(precision + recall, 1e-9) >= 0.8
    names = [m.name for t in mido.MidiFile(path).tracks for m in t if m.type == "track_name"]
    assert names == ["violin", "cello", "drums"]
    drums = mido.MidiFile(path).tracks[3]
    assert all(m.channel == 9 for m in drums if m.type == "note_on")


def test_time_signature_and_velocity() -> None:
    beats = np.arange(8) * 0.5
    assert time_signature(BeatGrid(beats, beats[::3], 3, 2, 120.0)) == (3, 4)
    assert time_signature(BeatGrid(beats, beats[::2], 2, 3, 120.0)) == (6, 8)
    assert velocity(-100.0) == 1 and velocity(0.0) == 127 and 1 < velocity(-40.0) < 127
    assert f_measure(np.array([0.0]), np.array([0.0])) == 1.0
