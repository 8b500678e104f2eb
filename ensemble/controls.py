"""Performance controls users of DDSP timbre transfer expect, as pure functions on frame arrays.

All arrays are (T,) on the project frame grid. Pitch is handled in MIDI (float) so shifts and
autotune are additions, and loudness in dB.
"""

from __future__ import annotations

import numpy as np

from ensemble.features import LOUDNESS_FLOOR_DB

QUANTILE_LEVELS = np.linspace(0.0, 1.0, 21)  # the grid loudness statistics are stored on


def hold_unvoiced_pitch(midi: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """Carry the last voiced pitch through unvoiced frames (the first voiced one backwards).

    Unvoiced frames still drive the harmonic oscillator; holding the pitch avoids glides to
    random tracker values under breaths, rests and consonants.
    """
    if not np.any(voiced):
        return np.asarray(midi, np.float64).copy()
    idx = np.where(voiced, np.arange(len(midi)), 0)
    np.maximum.accumulate(idx, out=idx)
    first = int(np.argmax(voiced))
    idx[:first] = first
    return np.asarray(midi, np.float64)[idx]


def octave_shift_toward(midi: np.ndarray, voiced: np.ndarray, target_mean_midi: float) -> int:
    """Whole octaves that bring the voiced mean pitch closest to ``target_mean_midi``."""
    if not np.any(voiced):
        return 0
    return int(np.round((target_mean_midi - float(np.mean(midi[voiced]))) / 12.0))


def quantile_map(
    values: np.ndarray,
    mask: np.ndarray,
    target_quantiles: np.ndarray,
    levels: np.ndarray = QUANTILE_LEVELS,
) -> np.ndarray:
    """Map ``values`` so their distribution over ``mask`` frames matches ``target_quantiles``.

    The DDSP demo's loudness auto-adjust: the input's quantiles (taken over the frames that
    matter, e.g. voiced and above the gate) are mapped piecewise-linearly onto the instrument's
    training-loudness quantiles at the same ``levels``.
    """
    values = np.asarray(values, np.float64)
    if np.count_nonzero(mask) < 2:
        return values.copy()
    source = np.quantile(values[mask], levels)
    source = np.maximum.accumulate(source + np.arange(len(source)) * 1e-6)  # strictly increasing
    return np.interp(values, source, np.asarray(target_quantiles, np.float64))


def autotune(midi: np.ndarray, amount: float) -> np.ndarray:
    """Move pitch toward the nearest semitone; 0 leaves it, 1 snaps it."""
    amount = float(np.clip(amount, 0.0, 1.0))
    return midi + amount * (np.round(midi) - midi)


def gate_loudness(
    loudness_db: np.ndarray,
    input_loudness_db: np.ndarray,
    voiced: np.ndarray,
    *,
    threshold_db: float,
    unvoiced_attenuation_db: float,
) -> np.ndarray:
    """Quiet threshold: frames whose input is under ``threshold_db`` fall silent, unvoiced frames
    are attenuated. ``loudness_db`` is the (possibly remapped) control, ``input_loudness_db`` the
    measured input the threshold applies to.

    Keeps breath noise, room tone and bleed from becoming notes of the instrument.
    """
    out = np.where(voiced, loudness_db, loudness_db - unvoiced_attenuation_db)
    return np.where(input_loudness_db < threshold_db, LOUDNESS_FLOOR_DB, out)


def db_to_gain(db: float) -> float:
    return float(10.0 ** (db / 20.0))
