"""Song metrics on signals with known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ensemble.config import SAMPLE_RATE
from ensemble.metrics import dynamics, melodic_complexity, metrics_json, song_metrics
from ensemble.plots import save_png, song_figure
from tests.conftest import tone


def test_pure_tone_has_zero_complexity_and_right_f0() -> None:
    m = song_metrics(tone(440.0, 3.0))
    assert m.melody is not None
    assert abs(m.melody.median_f0_hz - 440.0) < 440.0 * (2 ** (25 / 1200) - 1)
    assert m.melody.complexity is not None and m.melody.complexity < 1e-3
    assert m.melody.voiced_share > 0.8


def test_melody_with_leaps_is_more_complex_than_a_tone() -> None:
    notes = [tone(f, 0.5) for f in (262.0, 392.0, 330.0, 523.0, 294.0, 440.0)]
    leaps = song_metrics(np.concatenate(notes))
    steady = song_metrics(tone(330.0, 3.0))
    assert leaps.melody.complexity > 20 * max(steady.melody.complexity, 1e-5)


def test_complexity_definition() -> None:
    f0 = np.array([100.0, np.nan, 300.0, 0.0])
    assert np.isclose(melodic_complexity(f0), np.var([100, 300]) / 200.0**2)
    assert melodic_complexity(np.array([np.nan, 0.0])) is None


def test_known_rms_energy_and_range() -> None:
    t = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    sine = (0.6 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    d = dynamics(sine)
    assert abs(np.median(d.rms) - 0.6 / np.sqrt(2)) < 1e-3
    assert abs(d.average_energy - 0.18) < 0.01  # mean RMS^2 = A^2 / 2, edges slightly lower
    assert d.dynamic_range_db < 1.0
    stepped = np.concatenate([sine[:SAMPLE_RATE], sine[SAMPLE_RATE:] * 0.1])
    assert abs(dynamics(stepped).dynamic_range_db - 20.0) < 1.0


def test_silence_and_drums_have_no_melody() -> None:
    m = song_metrics(np.zeros(SAMPLE_RATE, np.float32))
    assert m.melody is None and m.dynamics.average_energy == 0.0
    noise = np.random.default_rng(0).normal(0, 0.1, SAMPLE_RATE).astype(np.float32)
    assert song_metrics(noise, pitched=False).melody is None


def test_json_and_plots(tmp_path: Path) -> None:
    named = {"input": song_metrics(tone(440.0, 1.0)), "mix": song_metrics(tone(220.0, 1.0))}
    data = metrics_json(named, series=True)
    assert set(data) == {"input", "mix"}
    assert data["input"]["summary"]["median_f0_hz"] > 400
    assert len(data["mix"]["series"]["rms"]) == len(named["mix"].dynamics.rms)
    fig = song_figure(named, "test")
    assert len(fig.data) == 6  # waveform, melody and RMS per signal
    png = save_png(named, tmp_path / "plots.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pyin_port_matches_librosa() -> None:
    import librosa

    from ensemble.metrics import PYIN_OPTIONS
    from ensemble.pyin import pyin

    rng = np.random.default_rng(0)
    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    glide = 0.4 * np.sin(2 * np.pi * np.cumsum(np.linspace(180, 700, len(t))) / SAMPLE_RATE)
    signal = np.concatenate([np.zeros(4000), glide, 0.05 * rng.standard_normal(8000)])
    kwargs = {**PYIN_OPTIONS, "sr": SAMPLE_RATE}
    ref = librosa.pyin(signal.astype(np.float32), **kwargs)
    mine = pyin(signal.astype(np.float32), **kwargs)
    np.testing.assert_array_equal(mine[1], ref[1])
    np.testing.assert_allclose(mine[0], ref[0], rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(mine[2], ref[2], atol=1e-9)
