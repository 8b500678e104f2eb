"""Loaders for the four layouts (Slakh, BabySlakh, URMP, symbolic) on tiny fixtures written here,
malformed tracks, and the feature cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf
import yaml

from ensemble.config import FRAME_RATE, HOP_LENGTH, SAMPLE_RATE
from ensemble.data import (
    MalformedTrackWarning,
    detect_layout,
    iter_slakh,
    iter_stems,
    iter_symbolic,
    iter_urmp,
)
from ensemble.data.cache import build_cache, iter_cached_tracks, load_track
from ensemble.errors import DataError

SECONDS = 1.0


def sine(freq: float, seconds: float = SECONDS, sr: int = SAMPLE_RATE) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_midi(path: Path, notes: list[tuple[float, float, int]], channel: int = 0) -> None:
    """notes: (start s, end s, pitch) at 120 bpm (one beat = 0.5 s = 480 ticks)."""
    events = []
    for start, end, pitch in notes:
        events.append(
            (round(start * 960), mido.Message("note_on", note=pitch, velocity=90, channel=channel))
        )
        events.append((round(end * 960), mido.Message("note_off", note=pitch, channel=channel)))
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500_000)])
    now = 0
    for tick, msg in sorted(events, key=lambda e: e[0]):
        track.append(msg.copy(time=tick - now))
        now = tick
    midi = mido.MidiFile(ticks_per_beat=480)
    midi.tracks.append(track)
    path.parent.mkdir(parents=True, exist_ok=True)
    midi.save(path)


def write_slakh_track(
    folder: Path, *, suffix: str = ".flac", sr: int = SAMPLE_RATE, ours: bool = False
) -> None:
    """A two-stem track: S00 violin A4 (0-0.5 s) then C5, S01 drums; real-Slakh metadata keys,
    or our corpus's (instrument, role, f0 arrays, no MIDI) with `ours`."""
    stems = {"S00": sine(440.0, sr=sr), "S01": 0.1 * sine(100.0, sr=sr)}
    for stem, audio in stems.items():
        (folder / "stems").mkdir(parents=True, exist_ok=True)
        sf.write(folder / "stems" / f"{stem}{suffix}", audio, sr)
    sf.write(folder / f"mix{suffix}", stems["S00"] + stems["S01"], sr)
    meta = {
        "audio_dir": "stems",
        "midi_dir": "MIDI",
        "stems": {
            "S00": {
                "inst_class": "Strings",
                "program_num": 40,
                "is_drum": False,
                "audio_rendered": True,
            },
            "S01": {
                "inst_class": "Drums",
                "program_num": 0,
                "is_drum": True,
                "audio_rendered": True,
            },
            "S02": {
                "inst_class": "Piano",
                "program_num": 0,
                "is_drum": False,
                "audio_rendered": False,
            },
        },
    }
    if ours:
        f0 = np.zeros(int(SECONDS * FRAME_RATE), np.float32)
        f0[:50] = 440.0
        (folder / "f0").mkdir()
        np.save(folder / "f0" / "S00.npy", f0)
        meta["stems"]["S00"].update(instrument="violin", role="leader", f0="f0/S00.npy")
    else:
        write_midi(folder / "MIDI" / "S00.mid", [(0.0, 0.5, 69), (0.5, 1.0, 72)])
        write_midi(folder / "MIDI" / "S01.mid", [(0.0, 0.1, 36)], channel=9)
    (folder / "metadata.yaml").write_text(yaml.safe_dump(meta))


@pytest.fixture
def slakh_root(tmp_path: Path) -> Path:
    root = tmp_path / "slakh"
    for i in (1, 2, 3):
        write_slakh_track(root / f"Track0000{i}")
    (root / "splits.json").write_text(
        json.dumps({"train": ["Track00001"], "validation": ["Track00002"], "test": ["Track00003"]})
    )
    return root


def test_slakh_stems_have_midi_f0_instrument_and_roles(slakh_root: Path) -> None:
    stems = list(iter_slakh(slakh_root))
    assert len(stems) == 6  # S02 is not rendered and is left out
    violin = next(s for s in stems if s.track == "Track00001" and s.stem == "S00")
    assert violin.instrument == "violin" and violin.role == "leader" and violin.f0_source == "midi"
    assert violin.audio is not None and len(violin.audio) == SAMPLE_RATE
    n_frames = SAMPLE_RATE // HOP_LENGTH
    assert violin.f0_hz.shape == violin.loudness_db.shape == (n_frames,)
    assert violin.f0_hz[10] == pytest.approx(440.0) and violin.f0_hz[60] == pytest.approx(
        523.25, abs=0.01
    )
    drums = next(s for s in stems if s.track == "Track00001" and s.stem == "S01")
    assert drums.is_drum and drums.instrument == "drums" and not drums.f0_hz.any()
    assert drums.role == "follower"
    assert {s.split for s in stems} == {"train", "validation", "test"}
    assert [s.track for s in iter_slakh(slakh_root, split="test")] == ["Track00003"] * 2


def test_babyslakh_wav_at_another_rate_is_resampled(tmp_path: Path) -> None:
    root = tmp_path / "babyslakh_16k"
    write_slakh_track(root / "Track00001", suffix=".wav", sr=22_050)
    stems = list(iter_stems(root))
    assert detect_layout(root) == "slakh"
    assert len(stems) == 2 and all(len(s.audio) == SAMPLE_RATE for s in stems)


def test_slakh2100_split_folders_and_our_f0_arrays(tmp_path: Path) -> None:
    root = tmp_path / "slakh2100"
    write_slakh_track(root / "train" / "Track00001")
    write_slakh_track(root / "test" / "Track01501", ours=True)
    test = list(iter_slakh(root, split="test"))
    assert [(s.track, s.split) for s in test] == [("Track01501", "test")] * 2
    violin = test[0]
    assert violin.f0_source == "midi" and violin.f0_hz[49] == 440.0 and violin.f0_hz[50] == 0.0


@pytest.mark.parametrize("damage", ["missing stem", "bad yaml", "mismatched lengths", "short f0"])
def test_malformed_slakh_track_is_skipped_with_a_warning(tmp_path: Path, damage: str) -> None:
    root = tmp_path / "corpus"
    write_slakh_track(root / "Track00001", ours=True)
    bad = root / "Track00002"
    write_slakh_track(bad, ours=True)
    if damage == "missing stem":
        (bad / "stems" / "S01.flac").unlink()
    elif damage == "bad yaml":
        (bad / "metadata.yaml").write_text("stems: {S00: [unclosed\n")
    elif damage == "mismatched lengths":
        sf.write(bad / "stems" / "S01.flac", sine(100.0, seconds=0.5), SAMPLE_RATE)
    else:
        np.save(bad / "f0" / "S00.npy", np.zeros(40, np.float32))
    with pytest.warns(MalformedTrackWarning, match="Track00002"):
        tracks = {s.track for s in iter_stems(root)}
    assert tracks == {"Track00001"}


def write_urmp_piece(folder: Path) -> None:
    folder.mkdir(parents=True)
    sr = 48_000
    sf.write(folder / "AuSep_1_vn_01_Test.wav", sine(440.0, sr=sr), sr)
    sf.write(folder / "AuSep_2_vc_01_Test.wav", sine(110.0, sr=sr), sr)
    sf.write(folder / "AuMix_01_Test.wav", sine(440.0, sr=sr) + sine(110.0, sr=sr), sr)
    times = np.arange(0, SECONDS, 256 / 44_100)  # URMP's annotation hop
    f0 = np.where(times < 0.6, 440.0, 0.0)
    np.savetxt(folder / "F0s_1_vn_01_Test.txt", np.stack([times, f0], axis=1), fmt="%.6f")


def test_urmp_annotations_are_resampled_to_the_frame_grid(tmp_path: Path) -> None:
    write_urmp_piece(tmp_path / "Dataset" / "01_Test_vn_vc")
    assert detect_layout(tmp_path) == "urmp"
    violin, cello = list(iter_urmp(tmp_path))
    assert (violin.stem, violin.instrument, violin.role) == ("S01", "violin", "leader")
    assert (cello.instrument, cello.role) == ("cello", "follower")
    assert violin.f0_source == "annotation" and cello.f0_source == "tracker"
    assert np.allclose(violin.f0_hz[:58], 440.0) and not violin.f0_hz[62:].any()
    assert len(violin.audio) == SAMPLE_RATE and violin.n_frames == SAMPLE_RATE // HOP_LENGTH
    voiced = cello.f0_hz > 0
    assert voiced.mean() > 0.8 and np.median(cello.f0_hz[voiced]) == pytest.approx(110.0, rel=0.03)


def test_urmp_bad_annotation_skips_the_piece(tmp_path: Path) -> None:
    write_urmp_piece(tmp_path / "01_Test_vn_vc")
    write_urmp_piece(tmp_path / "02_Bad_vn_vc")
    (tmp_path / "02_Bad_vn_vc" / "F0s_1_vn_01_Test.txt").write_text("time f0\nnot numbers\n")
    with pytest.warns(MalformedTrackWarning, match="02_Bad_vn_vc"):
        tracks = {s.track for s in iter_urmp(tmp_path)}
    assert tracks == {"01_Test_vn_vc"}


KERN = """**kern\t**kern
*Icello\t*Ivioln
*M4/4\t*M4/4
*MM60\t*MM60
4C\t4c
4D\t4d
4E\t4e
4F\t4f
=\t=
1G\t1g
==\t==
*-\t*-
"""

ABC = """X:1
T:First
M:2/4
L:1/8
K:G
GABc | d2d2 | e2d2 | G4 |]

X:2
T:Second
M:3/4
L:1/4
K:D
DEF | A2A | d3 |]
"""


def test_symbolic_kern_and_abc(tmp_path: Path) -> None:
    (tmp_path / "duet.krn").write_text(KERN)
    (tmp_path / "tunes.abc").write_text(ABC)
    assert detect_layout(tmp_path) == "symbolic"
    stems = list(iter_symbolic(tmp_path))
    by_track: dict[str, list] = {}
    for s in stems:
        by_track.setdefault(s.track, []).append(s)
    assert sorted(by_track) == ["duet", "tunes-1", "tunes-2"]
    duet = by_track["duet"]
    assert all(s.audio is None for s in duet) and len(duet) == 2
    # kern spines are listed bass first; music21 orders parts top-down: violin first
    assert [s.instrument for s in duet] == ["violin", "cello"]
    violin = duet[0]
    assert violin.role == "leader" and violin.f0_hz[50] == pytest.approx(261.63, abs=0.01)  # 60 bpm
    assert violin.f0_hz[450] == pytest.approx(392.0, abs=0.01)
    tune = by_track["tunes-1"][0]
    assert tune.f0_hz[0] == pytest.approx(392.0, abs=0.01)  # G4 at the default 100 bpm
    assert -100 < tune.loudness_db[0] < 0
    assert tune.loudness_db[-1] == -100.0 and tune.f0_hz[-1] == 0.0


def test_symbolic_loudness_follows_written_dynamics(tmp_path: Path) -> None:
    from music21 import dynamics, note, stream

    part = stream.Part()
    part.append(dynamics.Dynamic("p"))
    part.append([note.Note("A4", quarterLength=1.0) for _ in range(4)])
    part.append(dynamics.Dynamic("ff"))
    part.append([note.Note("A4", quarterLength=1.0) for _ in range(4)])
    stream.Score([part]).write("musicxml", fp=tmp_path / "swell.musicxml")
    (stem,) = iter_symbolic(tmp_path / "swell.musicxml")
    frames_per_beat = int(60 / 100 * FRAME_RATE)  # no tempo mark: 100 bpm
    quiet, loud = stem.loudness_db[frames_per_beat // 2], stem.loudness_db[-frames_per_beat]
    assert -100 < quiet < loud - 10


def test_unknown_folder_and_missing_path_raise(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(DataError, match="holds no dataset"):
        detect_layout(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        list(iter_stems(tmp_path / "nope"))


def test_cache_round_trip_and_resume(slakh_root: Path) -> None:
    shutil.rmtree(slakh_root / "Track00003")
    report = build_cache(slakh_root, workers=1, progress=False)
    assert (report.written, report.kept, report.skipped) == (2, 0, [])
    features = load_track(slakh_root, "Track00001")
    assert features.split == "train" and sorted(features.stems) == ["S00", "S01"]
    violin = features.stems["S00"]
    n_frames = SAMPLE_RATE // HOP_LENGTH
    assert violin["audio"].dtype == np.int16 and len(violin["audio"]) == SAMPLE_RATE
    for name in ("f0_truth", "f0_tracked", "confidence", "loudness_db", "rms"):
        assert violin[name].shape == (n_frames,), name
    assert violin["chroma"].shape == (12, n_frames)
    assert (violin["instrument"], violin["role"], violin["is_drum"]) == ("violin", "leader", False)
    confident = violin["confidence"][5:45] >= 0.5
    assert confident.mean() > 0.9
    assert np.median(violin["f0_tracked"][5:45]) == pytest.approx(440.0, rel=0.02)
    assert [t.track for t in iter_cached_tracks(slakh_root, split="validation")] == ["Track00002"]
    again = build_cache(slakh_root, workers=1, progress=False)
    assert (again.written, again.kept) == (0, 2)


def test_cache_refuses_scores_without_audio(tmp_path: Path) -> None:
    (tmp_path / "duet.krn").write_text(KERN)
    with pytest.raises(DataError, match="without audio"):
        build_cache(tmp_path, workers=1, progress=False)
