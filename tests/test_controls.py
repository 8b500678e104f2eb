"""Performance controls as pure functions."""

from __future__ import annotations

import numpy as np

from ensemble.controls import (
    QUANTILE_LEVELS,
    autotune,
    gate_loudness,
    hold_unvoiced_pitch,
    octave_shift_toward,
    quantile_map,
)
from ensemble.features import LOUDNESS_FLOOR_DB


def test_hold_unvoiced_pitch() -> None:
    midi = np.array([10.0, 60.0, 99.0, 62.0, 5.0])
    voiced = np.array([False, True, False, True, False])
    np.testing.assert_array_equal(hold_unvoiced_pitch(midi, voiced), [60, 60, 60, 62, 62])


def test_octave_shift_toward_range() -> None:
    midi = np.full(10, 45.0)
    assert octave_shift_toward(midi, np.ones(10, bool), target_mean_midi=70.0) == 2
    assert octave_shift_toward(midi, np.zeros(10, bool), target_mean_midi=70.0) == 0


def test_quantile_map_matches_target_distribution() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(-40, 3, 5000)
    target = np.quantile(rng.normal(-20, 8, 5000), QUANTILE_LEVELS)
    mapped = quantile_map(values, np.ones_like(values, bool), target)
    assert abs(np.median(mapped) + 20) < 0.5
    assert abs(np.std(mapped) - 8) < 0.8
    assert np.all(np.diff(mapped[np.argsort(values)]) >= -1e-9)  # order is preserved


def test_autotune_and_gate() -> None:
    midi = np.array([60.3, 61.8])
    np.testing.assert_allclose(autotune(midi, 1.0), [60, 62])
    np.testing.assert_allclose(autotune(midi, 0.5), [60.15, 61.9])
    loud = np.array([-20.0, -20.0, -80.0])
    out = gate_loudness(
        loud, loud, np.array([True, False, True]), threshold_db=-60.0, unvoiced_attenuation_db=15.0
    )
    np.testing.assert_allclose(out, [-20.0, -35.0, LOUDNESS_FLOOR_DB])
