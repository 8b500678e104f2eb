"""The conductor: shapes, run-time follower sets, rests for unusable leaders, learning, checkpoints.

Data is synthetic multitrack music made here: a leader melody, a bass an octave below it and a
drum hit on every beat, so what a trained model must predict is known exactly.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from ensemble.accompaniment import QUIET_DB, drum_envelope, viterbi_notes
from ensemble.conductor import (
    Conductor,
    ConductorConfig,
    ConductorNet,
    ConductorWarning,
    InstrumentInfo,
    ModelConfig,
    detect_onsets,
)
from ensemble.errors import CheckpointError, EnsembleError
from ensemble.features import FeatureFrame, hz_to_midi, midi_to_hz
from ensemble.threads import one_torch_thread
from ensemble.training.conductor import (
    ConductorTrack,
    FollowerStem,
    TrainSettings,
    _lr_at,
    fit,
)

BEAT = 25  # frames per beat (144 BPM)
TINY = ModelConfig(
    d_model=48,
    n_heads=4,
    encoder_layers=1,
    follower_layers=1,
    ff_mult=2,
    frame_dim=48,
    dropout=0.0,
    window_frames=256,
    overlap_frames=64,
)


def synthetic_track(rng: np.random.Generator, n_frames: int, name: str = "t") -> ConductorTrack:
    """Leader: one scale note per beat with an attack/decay envelope and a short rest before each
    bar; bass: the same notes an octave lower; drums: a hit on every beat."""
    scale = np.array([0, 2, 4, 5, 7, 9, 11])
    tonic = 60 + int(rng.integers(0, 12))
    midi = np.zeros(n_frames)
    loud = np.full(n_frames, -100.0)
    for beat, start in enumerate(range(0, n_frames, BEAT)):
        stop = min(start + BEAT - (8 if beat % 4 == 3 else 0), n_frames)
        midi[start:stop] = tonic + scale[rng.integers(0, 7)]
        loud[start:stop] = -20.0 - 0.3 * np.arange(stop - start)
    voiced = midi > 0
    chroma = np.zeros((12, n_frames), np.float32)
    chroma[(midi[voiced] % 12).astype(int), np.flatnonzero(voiced)] = 1.0
    leader = FeatureFrame(
        f0_hz=np.where(voiced, midi_to_hz(midi), 0.0).astype(np.float32),
        confidence=np.where(voiced, 0.95, 0.05).astype(np.float32),
        loudness_db=loud.astype(np.float32),
        rms=np.zeros(n_frames, np.float32),
        chroma=chroma,
    )
    drums = np.full(n_frames, -100.0)
    for start in range(0, n_frames, BEAT):
        seg = drums[start : start + BEAT]
        drums[start : start + BEAT] = -15.0 - 2.0 * np.arange(len(seg))
    return ConductorTrack(
        name=name,
        leader=leader,
        followers=[
            FollowerStem("bass", False, np.where(voiced, midi - 12, 0.0), loud - 6.0),
            FollowerStem("drums", True, np.zeros(n_frames), np.maximum(drums, -100.0)),
        ],
    )


def tiny_conductor(names: tuple[str, ...] = ("bass", "cello", "drums")) -> Conductor:
    config = ConductorConfig(
        model=TINY,
        instruments=[
            InstrumentInfo(n, n == "drums", -40.0, 0.0 if n == "drums" else 48.0) for n in names
        ],
    )
    torch.manual_seed(0)
    return Conductor(config, ConductorNet(TINY, len(names)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float]]:
    """A tiny conductor trained for a few dozen CPU steps on synthetic tracks."""
    rng = np.random.default_rng(0)
    train = [synthetic_track(rng, 900, f"train{i}") for i in range(6)]
    val = [synthetic_track(rng, 600, "val")]
    out = tmp_path_factory.mktemp("conductor")
    settings = TrainSettings(
        steps=80,
        batch_size=8,
        lr=3e-3,
        warmup_steps=10,
        val_every=40,
        log_every=20,
        max_transpose=3,
    )
    with one_torch_thread():
        metrics = fit(train, val, out, model_config=TINY, settings=settings, progress=False)
    return out, metrics


def test_shapes_follow_the_leader_grid_for_any_follower_set() -> None:
    conductor = tiny_conductor()
    rng = np.random.default_rng(1)
    for n_frames in (37, 256, 700):  # shorter than, equal to and longer than one window
        leader = synthetic_track(rng, n_frames).leader
        for followers in (["bass"], ["drums", "cello"], ["Bass", "cello", "drums"]):
            parts = conductor.conduct(leader, followers)
            assert sorted(parts) == sorted(f.lower() for f in followers)
            for part in parts.values():
                assert (
                    part.f0_hz.shape == part.voiced.shape == part.loudness_db.shape == (n_frames,)
                )
                assert part.f0_hz.dtype == part.loudness_db.dtype == np.float32
                assert part.voiced.dtype == bool
                assert np.all(part.f0_hz[~part.voiced] == 0)
    drums = conductor.conduct(leader, ["drums"])["drums"]
    assert not drums.voiced.any() and not drums.f0_hz.any()


def test_unknown_follower_lists_the_known_ones() -> None:
    with pytest.raises(EnsembleError, match="bass, cello, drums"):
        tiny_conductor().conduct(synthetic_track(np.random.default_rng(2), 100).leader, ["tuba"])


@pytest.mark.parametrize("case", ["silent", "unvoiced", "short"])
def test_unusable_leader_gives_rests_and_a_message(case: str) -> None:
    leader = synthetic_track(np.random.default_rng(3), 300).leader
    if case == "silent":
        leader.loudness_db[:] = -100.0
    elif case == "unvoiced":
        leader.confidence[:] = 0.0
    else:
        leader = leader.slice(0, 3)
    conductor = tiny_conductor()
    messages: list[str] = []
    parts = conductor.conduct(leader, ["bass", "drums"], messages=messages)
    assert len(messages) == 1 and "rest" in messages[0]
    for part in parts.values():
        assert len(part.f0_hz) == leader.n_frames
        assert not part.voiced.any() and np.all(part.loudness_db <= QUIET_DB)
    with pytest.warns(ConductorWarning):
        conductor.conduct(leader, ["bass"])


def test_viterbi_holds_notes_through_jitter() -> None:
    t = 60
    logp = np.full((1, t, 128), np.log(1e-4))
    logp[0, :, 40] = np.log(0.6)
    logp[0, 20:23, 47] = np.log(0.9)  # a 3-frame blip: not worth two note changes
    logp[0, 30:, 45] = np.log(0.95)  # a real change
    voiced = np.full((1, t), 0.9)
    voiced[0, 50:] = 0.02
    notes = viterbi_notes(logp, voiced)[0]
    assert np.all(notes[:30] == 40)
    assert np.all(notes[31:49] == 45)
    assert np.all(notes[51:] == -1)


def test_drum_envelope_has_an_attack_at_every_onset() -> None:
    smooth = np.full(300, -40.0, np.float32)
    onsets = np.array([10, 60, 110, 200])
    env = drum_envelope(smooth, onsets)
    assert np.array_equal(detect_onsets(env), onsets)
    away = np.ones(300, bool)
    for k in onsets:
        away[k - 3 : k + 1] = False
    assert np.array_equal(env[away], smooth[away])  # the prediction is kept between attacks


def test_tiny_model_learns_the_bass_line(trained: tuple[Path, dict[str, float]]) -> None:
    out, metrics = trained
    assert metrics["pitch_class_acc"] > 0.8, metrics
    conductor = Conductor.from_pretrained(out)
    track = synthetic_track(np.random.default_rng(7), 500)
    parts = conductor.conduct(track.leader, ["bass", "drums"])
    bass, truth = parts["bass"], track.followers[0].midi
    both = bass.voiced & (truth > 0)
    assert both.sum() > 0.7 * (truth > 0).sum()
    played = np.round(hz_to_midi(bass.f0_hz[both])).astype(int)
    assert np.mean(played % 12 == truth[both].astype(int) % 12) > 0.8
    hits = detect_onsets(parts["drums"].loudness_db)
    assert len(hits) > 0


def test_checkpoint_round_trip_and_files(trained: tuple[Path, dict[str, float]]) -> None:
    out, _ = trained
    assert {"model.safetensors", "config.json", "train_log.jsonl", "train_state.pt"} <= {
        p.name for p in out.iterdir()
    }
    config = json.loads((out / "config.json").read_text())
    assert [i["name"] for i in config["instruments"]] == ["bass", "drums"]
    a, b = Conductor.from_pretrained(out), Conductor.from_pretrained(out / "model.safetensors")
    leader = synthetic_track(np.random.default_rng(8), 200).leader
    pa, pb = a.conduct(leader, ["bass"])["bass"], b.conduct(leader, ["bass"])["bass"]
    assert np.array_equal(pa.f0_hz, pb.f0_hz) and np.allclose(pa.loudness_db, pb.loudness_db)
    lines = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert {x["split"] for x in lines} == {"train", "validation"}


def test_resume_continues_from_the_saved_step(
    trained: tuple[Path, dict[str, float]], tmp_path: Path
) -> None:
    out, _ = trained
    assert int(torch.load(out / "train_state.pt", weights_only=True)["step"]) == 80
    rng = np.random.default_rng(9)
    data = [synthetic_track(rng, 300)]
    with pytest.raises(EnsembleError, match="--resume"):
        fit(data, [], out, model_config=TINY, progress=False)
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    more = TrainSettings(steps=85, batch_size=2, val_every=5, log_every=5)
    with one_torch_thread():
        fit(data, data, copy, settings=more, resume=True, progress=False)
    lines = [json.loads(x) for x in (copy / "train_log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if x["split"] == "train"][-2:] == [80, 85]
    assert int(torch.load(copy / "train_state.pt", weights_only=True)["step"]) == 85


def test_learning_rate_anneals_within_a_time_budget() -> None:
    timed = TrainSettings(steps=1_000_000, lr=1e-3, warmup_steps=10, max_minutes=2.0)
    assert _lr_at(5, timed) < 1e-3  # warming up
    assert _lr_at(100, timed, elapsed_s=1.0) == pytest.approx(1e-3, rel=1e-3)
    assert _lr_at(100, timed, elapsed_s=120.0) == pytest.approx(1e-4)  # budget spent: 10 % floor
    assert _lr_at(1_000_000, TrainSettings(steps=1_000_000)) == pytest.approx(1e-4)


def test_corrupt_or_mismatched_checkpoint_is_a_checkpoint_error(
    trained: tuple[Path, dict[str, float]], tmp_path: Path
) -> None:
    out, _ = trained
    with pytest.raises(CheckpointError, match="missing"):
        Conductor.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text((out / "config.json").read_text())
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="corrupt"):
        Conductor.from_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes((out / "model.safetensors").read_bytes())
    config = json.loads((out / "config.json").read_text())
    config["model"]["d_model"] = 64
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="do not match the conductor config"):
        Conductor.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(CheckpointError, match="Cannot read the conductor config"):
        Conductor.from_pretrained(tmp_path)


def test_cli_bad_data_folder_is_one_readable_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ensemble",
            "train",
            "conductor",
            "--data",
            str(tmp_path / "nowhere"),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "nowhere" in lines[0]


def test_warnings_are_not_raised_for_a_good_leader() -> None:
    leader = synthetic_track(np.random.default_rng(4), 300).leader
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConductorWarning)
        tiny_conductor().conduct(leader, ["bass"])


def test_every_shipped_instrument_can_follow_the_shipped_conductor() -> None:
    from ensemble.instrument import Instrument, list_pretrained

    conductor = Conductor.from_pretrained()
    shipped = list_pretrained()
    assert "flute" in shipped and "flute" not in conductor.instruments
    for name in shipped:
        instrument = Instrument.from_pretrained(name)
        register = None if instrument.kind == "drums" else instrument.stats["pitch_midi_mean"]
        played_by = conductor.stand_in(name, register)
        assert played_by == name or not conductor.config.instruments[
            conductor.instruments.index(played_by)].is_drum  # fmt: skip
    assert conductor.stand_in("flute", 79.0) != "flute"
    with pytest.raises(EnsembleError, match="cannot play"):
        conductor.stand_in("kazoo")  # no register given: nothing to stand in by
