"""Perform end to end with real (untrained, small) decoders and conductor from a temp folder."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ensemble.conductor import Conductor, ConductorConfig, ConductorNet, InstrumentInfo
from ensemble.config import HOP_LENGTH, SAMPLE_RATE
from ensemble.errors import EnsembleError
from ensemble.features import hz_to_midi
from ensemble.instrument import Instrument, InstrumentConfig
from ensemble.mix import ROLE_OFFSET_LU, TRUE_PEAK_CEILING_DBTP, integrated_loudness, true_peak_dbtp
from ensemble.perform import Ensemble, PerformSettings
from tests.conftest import tone
from tests.test_conductor import TINY

METERS = {"2/4", "3/4", "4/4", "6/8", "9/8", "12/8"}
STATS = {"pitch_midi_mean": 72.0, "loudness_quantiles": list(np.linspace(-70.0, -15.0, 21))}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)  # untrained decoders: a seed keeps their output (and its level) fixed
    # flute has a decoder but is not in the conductor's vocabulary (as in the shipped set).
    pitched = ("violin", "cello", "flute")
    for name, kind in [(p, "pitched") for p in pitched] + [("drums", "drums")]:
        config = InstrumentConfig(
            name=name,
            kind=kind,
            hidden_size=32,
            gru_layers=1,
            n_harmonics=8,
            n_noise_bands=16,
            stats=dict(STATS, pitch_midi_mean=79.0) if name == "flute" else dict(STATS),
        )
        Instrument(config).save(root / name)
    infos = [
        InstrumentInfo("violin", False, -30.0, 72.0),
        InstrumentInfo("cello", False, -32.0, 48.0),
        InstrumentInfo("drums", True, -35.0, 0.0),
    ]
    config = ConductorConfig(model=TINY, instruments=infos)
    Conductor(config, ConductorNet(TINY, len(infos))).save(root / "conductor")
    return root


def test_stereo_stems_sum_to_mix_balanced_without_clipping(
    checkpoints: Path, violin_like: np.ndarray
) -> None:
    ensemble = Ensemble.from_pretrained(checkpoints)
    perf = ensemble.perform(violin_like, ["violin", "cello", "drums"])
    n = (len(violin_like) // HOP_LENGTH) * HOP_LENGTH
    assert perf.leader == "violin" and set(perf.stems) == {"violin", "cello", "drums"}
    assert perf.mix.shape == (n, 2) and all(s.shape == (n, 2) for s in perf.stems.values())
    np.testing.assert_allclose(np.sum(list(perf.stems.values()), axis=0), perf.mix, atol=1e-5)
    assert np.max(np.abs(perf.mix)) < 1.0
    assert true_peak_dbtp(perf.mix) <= TRUE_PEAK_CEILING_DBTP + 0.01
    assert perf.parts["drums"].f0_hz is None
    # cello's training pitch (72 in these checkpoints) is not a bass register: harmony
    assert {n: s.role for n, s in perf.mixing.stems.items()} == {
        "violin": "leader",
        "cello": "harmony",
        "drums": "drums",
    }
    leader = integrated_loudness(perf.stems["violin"])
    for name, stem in perf.stems.items():
        gap = integrated_loudness(stem) - leader
        assert gap == pytest.approx(ROLE_OFFSET_LU[perf.mixing.stems[name].role], abs=0.5)
    assert not np.allclose(perf.mix[:, 0], perf.mix[:, 1])  # the cello sits to one side
    assert perf.metrics()["mix"].duration_s == pytest.approx(n / SAMPLE_RATE)


def test_auto_adjust_moves_leader_to_its_register(checkpoints: Path) -> None:
    ensemble = Ensemble.from_pretrained(checkpoints)
    low = tone(110.0, 2.0)  # A2; the violin's training mean is C5 (MIDI 72)
    adjusted = ensemble.perform(low, ["violin"])
    raw = ensemble.perform(low, ["violin"], settings=PerformSettings(auto_adjust=False))
    voiced = adjusted.parts["violin"].voiced
    shift = np.median(adjusted.parts["violin"].f0_hz[voiced] / raw.parts["violin"].f0_hz[voiced])
    assert np.isclose(shift, 4.0, rtol=0.02)  # MIDI 45 -> 69: two octaves toward 72
    manual = ensemble.perform(
        low,
        ["violin"],
        settings=PerformSettings(auto_adjust=False, octave_shift=1, semitone_shift=2.0),
    )
    ratio = np.median(manual.parts["violin"].f0_hz[voiced] / raw.parts["violin"].f0_hz[voiced])
    assert np.isclose(ratio, 2.0 * 2 ** (2 / 12), rtol=0.01)


def test_gain_and_mute(checkpoints: Path, violin_like: np.ndarray) -> None:
    ensemble = Ensemble.from_pretrained(checkpoints)
    perf = ensemble.perform(
        violin_like, ["violin", "cello"], settings=PerformSettings(mute=("cello",))
    )
    assert set(perf.stems) == {"violin"} and any("Muted" in m for m in perf.messages)
    quiet = ensemble.perform(
        violin_like, ["violin", "cello"], settings=PerformSettings(gains_db={"cello": -20.0})
    )
    loud = ensemble.perform(violin_like, ["violin", "cello"])
    ratio = np.std(quiet.stems["cello"]) / np.std(quiet.stems["violin"])
    assert ratio < 0.2 * np.std(loud.stems["cello"]) / np.std(loud.stems["violin"])
    gap = integrated_loudness(quiet.stems["cello"]) - integrated_loudness(quiet.stems["violin"])
    assert gap == pytest.approx(ROLE_OFFSET_LU["harmony"] - 20.0, abs=0.5)  # on top of balance


def test_unvoiced_input_is_not_an_error(checkpoints: Path) -> None:
    noise = np.random.default_rng(0).normal(0, 0.2, 2 * SAMPLE_RATE).astype(np.float32)
    perf = Ensemble.from_pretrained(checkpoints).perform(noise, ["violin", "cello"])
    assert perf.messages and np.all(np.isfinite(perf.mix))


@pytest.mark.parametrize(
    ("instruments", "leader", "needle"),
    [
        ([], None, "at least one"),
        (["tuba"], None, "Unknown instrument"),
        (["violin"], "cello", "leader"),
        (["drums"], None, "pitched"),
        (["violin", "violin"], None, "once"),
    ],
)
def test_bad_choices(
    checkpoints: Path, instruments: list[str], leader: str | None, needle: str
) -> None:
    with pytest.raises(EnsembleError, match=needle):
        Ensemble.from_pretrained(checkpoints).perform(tone(440.0, 1.0), instruments, leader)


def test_an_instrument_outside_the_conductors_vocabulary_follows(
    checkpoints: Path, violin_like: np.ndarray
) -> None:
    perf = Ensemble.from_pretrained(checkpoints).perform(violin_like, ["violin", "flute", "drums"])
    assert perf.parts["flute"].role == "follower"
    assert any("flute plays the conductor's" in m for m in perf.messages)
    assert perf.grid.tempo_bpm > 0 and perf.context is not None
    flute = perf.parts["flute"]
    if flute.voiced.any():  # played in the flute's own register (by octaves from its stand-in)
        mean = float(np.mean(hz_to_midi(flute.f0_hz[flute.voiced])))
        assert abs(mean - 79.0) <= 6.0 + 1e-6


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ensemble", "perform", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_writes_mix_stems_metrics(
    checkpoints: Path, tmp_path: Path, violin_like: np.ndarray
) -> None:
    wav = tmp_path / "in.wav"
    sf.write(wav, violin_like, SAMPLE_RATE)
    out = tmp_path / "out"
    done = _cli(
        str(wav),
        "--instruments",
        "violin,cello,drums",
        "--out",
        str(out),
        "--checkpoints",
        str(checkpoints),
        "--gain",
        "drums=-6",
        "--png",
    )
    assert done.returncode == 0, done.stderr
    assert (out / "mix.wav").exists() and (out / "plots.png").exists()
    assert sf.info(out / "mix.wav").channels == 2
    assert all(sf.info(p).channels == 2 for p in (out / "stems").iterdir())
    assert sorted(p.name for p in (out / "stems").iterdir()) == [
        "cello.wav",
        "drums.wav",
        "violin.wav",
    ]
    report = json.loads((out / "metrics.json").read_text())
    assert {"input", "mix", "violin", "cello", "drums"} <= set(report["metrics"])
    assert report["metrics"]["drums"]["summary"]["melodic_complexity"] is None
    assert report["rhythm"]["tempo_bpm"] > 0 and report["rhythm"]["meter"] in METERS
    assert report["harmony"]["key"].split()[1] in ("major", "minor")
    assert report["harmony"]["chords"][0]["start_s"] == 0.0
    loudness = report["loudness"]
    assert loudness["true_peak_dbtp"] <= -1.0 + 1e-6 and loudness["lufs"] <= -14.0 + 0.1
    stems = loudness["stems"]
    assert set(stems) == {"violin", "cello", "drums"} and stems["drums"]["user_db"] == -6.0
    assert stems["drums"]["lu_to_leader"] == pytest.approx(ROLE_OFFSET_LU["drums"] - 6.0, abs=0.1)
    assert all(isinstance(s["lufs"], float) and "gain_db" in s for s in stems.values())


@pytest.mark.parametrize(
    ("make_input", "extra", "needle"),
    [
        (lambda p: p.write_text("not audio"), [], "not an audio file"),
        (lambda p: None, [], "does not exist"),
        (lambda p: sf.write(p, np.zeros(SAMPLE_RATE), SAMPLE_RATE), [], "silent"),
        (
            lambda p: sf.write(p, tone(440, 1.0), SAMPLE_RATE),
            ["--instruments", "tuba"],
            "Unknown instrument",
        ),
        (lambda p: sf.write(p, tone(440, 1.0), SAMPLE_RATE), ["--autotune", "3"], "between 0"),
        (lambda p: sf.write(p, tone(440, 1.0), SAMPLE_RATE), ["--gain", "loud"], "NAME=DB"),
    ],
)
def test_cli_failures_are_one_readable_line(
    checkpoints: Path,
    tmp_path: Path,
    make_input: Callable[[Path], object],
    extra: list[str],
    needle: str,
) -> None:
    wav = tmp_path / "in.wav"
    make_input(wav)
    done = _cli(
        str(wav),
        "--out",
        str(tmp_path / "o"),
        "--checkpoints",
        str(checkpoints),
        "--instruments",
        "violin",
        *extra,
    )
    assert done.returncode == 2
    assert needle in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "o" / "mix.wav").exists()


def test_cli_missing_checkpoints(tmp_path: Path) -> None:
    wav = tmp_path / "in.wav"
    sf.write(wav, tone(440, 1.0), SAMPLE_RATE)
    done = _cli(str(wav), "--out", str(tmp_path / "o"), "--checkpoints", str(tmp_path / "none"))
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_available_lists_instruments_not_the_conductor(checkpoints: Path) -> None:
    assert Ensemble.from_pretrained(checkpoints).available == ["cello", "drums", "flute", "violin"]
