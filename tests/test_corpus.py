"""The corpus renderer: planning, splits, arrangement pieces, a two-piece render, and the CLI's
answers to bad input."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from ensemble.cli import main
from ensemble.config import FRAME_RATE, HOP_LENGTH, SAMPLE_RATE
from ensemble.corpus import DEFAULT_SOUNDFONT, make_splits, render_corpus
from ensemble.corpus.arrangement import Arrangement, Note, fit_range, monophonic
from ensemble.corpus.drums import CRASH, KICK, SNARE, DrumStyle, drum_part
from ensemble.corpus.folk import arrange_folk
from ensemble.corpus.harmony import estimate_key, fit_chords
from ensemble.corpus.score import Bar, score_data
from ensemble.corpus.sources import PieceRef, plan
from ensemble.corpus.voices import VOICES
from ensemble.data import iter_stems

HAS_RENDERER = shutil.which("fluidsynth") is not None and DEFAULT_SOUNDFONT.is_file()


def test_plan_is_deterministic_and_mixes_the_kinds() -> None:
    slots = plan(40, seed=3)
    assert slots == plan(40, seed=3) and slots != plan(40, seed=4)
    assert Counter(s.kind for s in slots) == {"chorale": 16, "folk": 16, "quartet": 8}
    assert {s.kind for s in plan(3, seed=0)} == {"chorale", "folk", "quartet"}
    firsts = [s.candidates[0] for s in slots]
    assert len(set(firsts)) == len(firsts)  # no piece twice
    assert [s.track for s in slots[:2]] == ["Track00001", "Track00002"]


def test_splits_keep_groups_together_and_fill_validation_and_test() -> None:
    groups = {f"Track{i:05d}": f"piece{i // 2}" for i in range(20)}  # pairs share a piece
    splits = make_splits(groups, seed=0)
    assert sorted(t for tracks in splits.values() for t in tracks) == sorted(groups)
    assert splits["validation"] and splits["test"]
    owner = {t: s for s, tracks in splits.items() for t in tracks}
    for i in range(0, 20, 2):
        assert owner[f"Track{i:05d}"] == owner[f"Track{i + 1:05d}"]
    small = make_splits({"a": "a", "b": "b", "c": "c"}, seed=0)
    assert [len(small[s]) for s in ("train", "validation", "test")] == [1, 1, 1]


def test_monophonic_and_range_fitting() -> None:
    chord = [Note(0, 1, 60, 80), Note(0, 1, 67, 80), Note(0.5, 1, 64, 80)]
    top = monophonic(chord)
    assert [(n.start, n.pitch, n.duration) for n in top] == [(0, 67, 0.5), (0.5, 64, 1)]
    assert [n.pitch for n in monophonic(chord, top=False)] == [60, 64]
    flute = VOICES["flute"]
    fitted = fit_range([Note(0, 1, 48, 80), Note(1, 1, 55, 80)], flute)
    assert all(flute.low <= n.pitch <= flute.high for n in fitted)
    assert fitted[1].pitch - fitted[0].pitch == 7  # moved as a whole, intervals kept


def test_chords_fitted_from_the_melody() -> None:
    bars = [Bar(4.0 * i, 4.0, 4.0, 1.0) for i in range(3)]
    melody = [Note(0, 1, 60, 80), Note(1, 1, 64, 80), Note(2, 2, 67, 80)]  # C E G
    melody += [Note(4, 1, 67, 80), Note(5, 1, 71, 80), Note(6, 2, 74, 80)]  # G B D
    melody += [Note(8, 4, 72, 80)]
    assert estimate_key(melody) == (0, "major")
    chords = fit_chords(melody, bars, (0, "major"))
    assert [(c.start, c.root) for c in chords] == [(0.0, 0), (4.0, 7), (8.0, 0)]
    assert set(chords[1].pitch_classes) == {7, 11, 2}


def test_drums_follow_the_meter() -> None:
    four = [Bar(4.0 * i, 4.0, 4.0, 1.0) for i in range(9)]
    style = DrumStyle(
        cymbal=42, every_subdivision=True, phrase=4, fill_chance=1.0, extra_kick=False
    )
    notes = drum_part(four, np.random.default_rng(0), style)
    second = [n for n in notes if 4.0 <= n.start < 8.0]
    assert {n.start for n in second if n.pitch == KICK} == {4.0, 6.0}
    assert {n.start for n in second if n.pitch == SNARE} == {5.0, 7.0}
    assert len([n for n in second if n.pitch == 42]) == 8  # eighth-note hi-hat
    fill_bar = [n for n in notes if 12.0 <= n.start < 16.0]
    assert len([n for n in fill_bar if n.start >= 15.0]) >= 4  # sixteenths into bar 5
    assert any(n.pitch == CRASH and n.start == 16.0 for n in notes)  # crash after the fill
    compound = [Bar(3.0 * i, 3.0, 3.0, 1.5) for i in range(3)]
    six_eight = drum_part(compound, np.random.default_rng(0), style)
    hats = sorted(n.start for n in six_eight if n.pitch == 42 and n.start >= 3.0)
    assert np.allclose(np.diff(hats), 0.5)  # triplet eighths


ABC = """X:1
T:Test reel
M:4/4
L:1/8
K:D
A|"D"defd "G"BdAF|"D"DFAd "A7"cecA|"D"defd "G"BdAF|"A7"GFEC "D"D3:|
"""


def test_folk_band_arrangement_uses_chord_symbols() -> None:
    from music21 import converter

    data = score_data(converter.parse(ABC, format="abc"), expand_repeats=True)
    ref = PieceRef("folk", "test.abc", 1)
    band = arrange_folk(ref, data, np.random.default_rng(1), max_seconds=30.0)
    assert [p.label for p in band.parts] == ["lead", "bass", "comping", "drums"]
    assert [p.role for p in band.parts] == ["leader", "follower", "follower", "follower"]
    assert band.parts[3].voice.is_drum and band.duration_s <= 30.0
    bass = band.parts[1]
    first_full_bar = [n for n in bass.notes if n.start < 1.0 + 4.0]
    assert (first_full_bar[0].pitch - band.transpose) % 12 == 2  # D, from the "D" symbol
    lead = band.parts[0]
    assert all(lead.voice.low <= n.pitch <= lead.voice.high for n in lead.notes)


@pytest.mark.skipif(not HAS_RENDERER, reason="needs Debian fluidsynth and fluid-soundfont-gm")
def test_beat_grid_counts_an_anacrusis_back_from_its_end() -> None:
    # 3/4 at 120 bpm (0.5 s a beat): a one-beat pickup, two full bars, a two-beat closing bar,
    # the pickup again (a repeat), one more full bar.
    bars = [Bar(0, 1, 3, 1), Bar(1, 3, 3, 1), Bar(4, 3, 3, 1), Bar(7, 2, 3, 1), Bar(9, 1, 3, 1)]
    bars.append(Bar(10, 3, 3, 1))
    piece = Arrangement("folk", "x", "x", "x", 120.0, 13.0, 0, "3/4", [], bars)
    beats, downbeats = piece.beat_grid()
    assert beats == [0.5 * k for k in range(13)]
    assert downbeats == [0.5, 2.0, 3.5, 5.0]


def test_render_two_short_pieces(tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    summary = render_corpus(out, max_pieces=2, seed=0, workers=1, max_seconds=5, progress=False)
    assert sorted(summary.tracks) == ["Track00001", "Track00002"]
    assert {m["kind"] for m in summary.tracks.values()} == {"chorale", "folk"}
    splits = json.loads((out / "splits.json").read_text())
    assert sorted(t for tracks in splits.values() for t in tracks) == ["Track00001", "Track00002"]
    folk = next(t for t, m in summary.tracks.items() if m["kind"] == "folk")
    meta = yaml.safe_load((out / folk / "metadata.yaml").read_text())
    assert meta["stems"]["S03"]["is_drum"] and meta["stems"]["S00"]["role"] == "leader"
    for stem, info in meta["stems"].items():
        audio, sr = sf.read(out / folk / "stems" / f"{stem}.flac")
        assert sr == SAMPLE_RATE and audio.ndim == 1 and np.abs(audio).max() > 0.01, stem
        f0 = np.load(out / folk / info["f0"])
        assert len(f0) == len(audio) // HOP_LENGTH
        assert (out / folk / "MIDI" / f"{stem}.mid").is_file()
    mix, _ = sf.read(out / folk / "mix.flac")
    assert np.abs(mix).max() <= 0.91 and len(mix) == len(audio)
    assert meta["duration_s"] <= 5 + 1.0 + 1 / FRAME_RATE
    # Exact beats from the score: evenly spaced at the tempo, downbeats among them.
    beats, downbeats = np.array(meta["beats_s"]), np.array(meta["downbeats_s"])
    assert len(beats) >= 4 and np.ptp(np.diff(beats)) < 2e-3 and len(downbeats) >= 1
    assert all(np.min(np.abs(beats - d)) < 1e-3 for d in downbeats)
    stems = list(iter_stems(out))
    assert len(stems) == 8 and all(s.f0_source == "midi" for s in stems)
    again = render_corpus(out, max_pieces=2, seed=0, workers=1, max_seconds=5, progress=False)
    assert again.tracks == summary.tracks  # kept, not re-rendered


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["corpus", *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["render", "--out", "{tmp}/c", "--max-pieces", "0"], "--max-pieces must be at least 1"),
        (["render", "--out", "{tmp}/c", "--workers", "0"], "--workers must be at least 1"),
        (["render", "--out", "{tmp}/c", "--soundfont", "{tmp}/none.sf2"], "fluid-soundfont-gm"),
        (["render", "--out", "{tmp}/file.txt"], "is a file"),
        (["cache", "{tmp}/missing"], "does not exist"),
        (["cache", "{tmp}"], "holds no dataset"),
    ],
)
def test_cli_bad_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    (tmp_path / "file.txt").write_text("x")
    code, err = run_cli(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
    assert "Traceback" not in err
