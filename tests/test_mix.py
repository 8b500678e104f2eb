"""The mix stage on signals generated here: loudness, true peak, pan law, room, balance, level."""

from __future__ import annotations

import numpy as np
import pytest

from ensemble.config import SAMPLE_RATE
from ensemble.mix import (
    BASS,
    DRUMS,
    HARMONY,
    LEADER,
    LIMITER_MARGIN_DB,
    MAX_BOOST_DB,
    MAX_LIMITING_DB,
    MIX_TARGET_LUFS,
    ROLE_OFFSET_LU,
    TRUE_PEAK_CEILING_DBTP,
    assign_roles,
    default_pans,
    downmix,
    integrated_loudness,
    mix_stems,
    pan,
    pan_gains,
    reverb_return,
    room_impulse_response,
    true_peak_dbtp,
)
from tests.conftest import tone

SECONDS = 4.0
ROLES = {"violin": LEADER, "bass": BASS, "cello": HARMONY, "drums": DRUMS}
PANS = {"violin": 0.0, "bass": 0.0, "cello": -0.5, "drums": 0.1}


def sine(freq_hz: float, seconds: float, dbfs: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (10 ** (dbfs / 20) * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def drum_hits(seconds: float, amp: float) -> np.ndarray:
    """Noise bursts every 0.5 s with a 40 ms decay: a peaky, unpitched stem."""
    n = int(seconds * SAMPLE_RATE)
    t = (np.arange(n) % (SAMPLE_RATE // 2)) / SAMPLE_RATE
    noise = np.random.default_rng(3).standard_normal(n)
    return (amp * noise * np.exp(-t / 0.04)).astype(np.float32)


def stems_of_very_different_levels() -> dict[str, np.ndarray]:
    """A quiet leader, a bass 11 LU above it, a loud cello and very quiet drums."""
    leader = tone(660.0, SECONDS, amp=0.02)
    bass = tone(82.0, SECONDS)
    bass *= 10 ** ((integrated_loudness(leader) + 11.0 - integrated_loudness(bass)) / 20)
    return {
        "violin": leader,
        "bass": bass.astype(np.float32),
        "cello": tone(196.0, SECONDS, amp=0.9),
        "drums": drum_hits(SECONDS, 0.003),
    }


def test_loudness_of_the_bs1770_reference_tone() -> None:
    # EBU Tech 3341 / BS.1770: a 997 Hz sine at -23 dBFS in both channels reads -23 LUFS,
    # the same tone in one channel 3.01 LU less.
    mono = sine(997.0, 5.0, -23.0)
    assert integrated_loudness(np.stack([mono, mono], axis=1)) == pytest.approx(-23.0, abs=0.1)
    assert integrated_loudness(mono) == pytest.approx(-26.01, abs=0.1)
    # shorter than one 400 ms gating block: measured as one block of its own length
    assert integrated_loudness(mono[: int(0.25 * SAMPLE_RATE)]) == pytest.approx(-26.01, abs=0.1)


def test_silence_has_no_loudness_and_no_peak() -> None:
    assert integrated_loudness(np.zeros(SAMPLE_RATE, np.float32)) == -np.inf
    assert integrated_loudness(np.zeros(0, np.float32)) == -np.inf
    assert integrated_loudness(sine(997.0, 2.0, -90.0)) == -np.inf  # under the -70 LUFS gate
    assert true_peak_dbtp(np.zeros((100, 2), np.float32)) == -np.inf


def test_true_peak_finds_the_peak_between_samples() -> None:
    # fs/4 sine at 45° phase: every sample is at ±0.707, the waveform itself reaches 1.0
    n = np.arange(SAMPLE_RATE)
    audio = np.sin(np.pi / 2 * n + np.pi / 4).astype(np.float32)
    assert 20 * np.log10(np.max(np.abs(audio))) == pytest.approx(-3.01, abs=0.01)
    assert true_peak_dbtp(audio) == pytest.approx(0.0, abs=0.2)


def test_pan_law_keeps_power_constant() -> None:
    positions = np.linspace(-1.0, 1.0, 21)
    gains = np.array([pan_gains(p) for p in positions])
    np.testing.assert_allclose(np.sum(gains**2, axis=1), 1.0, atol=1e-12)
    assert pan_gains(-1.0) == pytest.approx((1.0, 0.0)) and pan_gains(1.0) == pytest.approx((0, 1))
    assert pan_gains(0.0)[0] == pytest.approx(pan_gains(0.0)[1])
    signal = tone(440.0, 2.0)
    loudness = [integrated_loudness(pan(signal, p)) for p in (-1.0, -0.3, 0.0, 0.6, 1.0)]
    assert np.ptp(loudness) < 0.05
    assert pan(signal, 0.4).shape == (len(signal), 2)


def test_room_is_deterministic_decorrelated_and_linear() -> None:
    ir = room_impulse_response()
    assert ir.ndim == 2 and ir.shape[1] == 2 and not ir.flags.writeable
    np.testing.assert_allclose(np.sum(ir.astype(np.float64) ** 2, axis=0), 1.0, atol=1e-3)
    assert abs(np.corrcoef(ir.T)[0, 1]) < 0.1
    a, b = tone(330.0, 1.0), drum_hits(1.0, 0.3)
    wet = reverb_return(a + b, -10.0)
    assert wet.shape == (len(a), 2)
    np.testing.assert_allclose(wet, reverb_return(a, -10.0) + reverb_return(b, -10.0), atol=1e-5)


def test_roles_by_kind_name_and_register() -> None:
    kinds = {"violin": "pitched", "cello": "pitched", "bass": "pitched", "drums": "drums"}
    means = {"violin": 72.0, "cello": 53.3, "bass": 40.1}
    assert assign_roles("violin", kinds, means) == ROLES
    no_bass = {"violin": "pitched", "cello": "pitched", "viola": "pitched"}
    roles = assign_roles("violin", no_bass, {"violin": 72.0, "cello": 53.3, "viola": 60.9})
    assert roles == {"violin": LEADER, "cello": HARMONY, "viola": HARMONY}  # cello is not low
    low = assign_roles(
        "flute",
        {"flute": "pitched", "low": "pitched", "clarinet": "pitched"},
        {"flute": 72.0, "low": 45.0, "clarinet": 66.8},
    )
    assert low == {"flute": LEADER, "low": BASS, "clarinet": HARMONY}
    assert assign_roles("bass", {"bass": "pitched"}, {"bass": 40.0}) == {"bass": LEADER}
    assert (
        assign_roles(
            "violin", {"violin": "pitched", "tuba": "pitched"}, {"violin": 72.0, "tuba": 50.0}
        )["tuba"]
        == BASS
    )


def test_default_pans_centre_the_low_end_and_spread_harmony() -> None:
    roles = {"violin": LEADER, "viola": HARMONY, "cello": HARMONY, "bass": BASS, "drums": DRUMS}
    pans = default_pans(roles, {"violin": 72.0, "viola": 60.9, "cello": 53.3, "bass": 40.1})
    assert pans["violin"] == 0.0 and pans["bass"] == 0.0 and abs(pans["drums"]) <= 0.15
    assert pans["viola"] < 0.0 < pans["cello"]  # higher part on the left, as an orchestra sits


def gaps_to_leader(stems: dict[str, np.ndarray]) -> dict[str, float]:
    """Measured afresh on the final stereo stems (not taken from the report)."""
    leader = integrated_loudness(stems["violin"])
    return {name: integrated_loudness(audio) - leader for name, audio in stems.items()}


def test_balance_reaches_every_role_target() -> None:
    dry = stems_of_very_different_levels()
    before = {
        name: integrated_loudness(audio) - integrated_loudness(dry["violin"])
        for name, audio in dry.items()
    }
    assert before["bass"] == pytest.approx(11.0, abs=0.1)  # the bass starts far above the leader
    mix, stems, report = mix_stems(dry, ROLES, PANS)
    for name, gap in gaps_to_leader(stems).items():
        assert gap == pytest.approx(ROLE_OFFSET_LU[ROLES[name]], abs=0.5), name
        assert report.stems[name].lufs == pytest.approx(integrated_loudness(stems[name]), abs=0.1)
    assert mix.shape == (int(SECONDS * SAMPLE_RATE), 2) and mix.dtype == np.float32
    assert all(s.shape == mix.shape and s.dtype == np.float32 for s in stems.values())
    # stems sum to the mix, both channels
    np.testing.assert_allclose(np.sum(list(stems.values()), axis=0), mix, atol=1e-6)
    # the mix is at its target or, when the ceiling ruled, at the ceiling
    assert true_peak_dbtp(mix) <= TRUE_PEAK_CEILING_DBTP + 0.01
    assert np.max(np.abs(mix)) < 1.0
    assert report.lufs == pytest.approx(integrated_loudness(mix), abs=0.1)
    if report.peak_limited:
        assert report.true_peak_dbtp == pytest.approx(TRUE_PEAK_CEILING_DBTP, abs=0.01)
        assert report.lufs < MIX_TARGET_LUFS and report.message() is not None
    else:
        assert report.lufs == pytest.approx(MIX_TARGET_LUFS, abs=0.1)


def test_loudness_target_when_the_ceiling_allows_and_the_ceiling_when_not() -> None:
    smooth = {"violin": tone(440.0, SECONDS, amp=0.1)}
    mix, _, report = mix_stems(smooth, {"violin": LEADER}, {"violin": 0.0})
    assert not report.peak_limited and report.message() is None
    assert integrated_loudness(mix) == pytest.approx(MIX_TARGET_LUFS, abs=0.1)
    # A tone with short accents 13 dB over its peaks: the limiter takes the accents down (by at
    # most MAX_LIMITING_DB), the mix reaches its target and stays under the ceiling.
    accented = tone(440.0, SECONDS, amp=0.1)
    for start in range(0, len(accented), SAMPLE_RATE):
        accented[start : start + 80] *= 4.5
    mix, stems, report = mix_stems({"violin": accented}, {"violin": LEADER}, {"violin": 0.0})
    assert not report.peak_limited and report.message() is None
    assert 1.0 < report.limiting_db <= MAX_LIMITING_DB + LIMITER_MARGIN_DB + 0.05
    assert true_peak_dbtp(mix) <= TRUE_PEAK_CEILING_DBTP + 0.05
    assert report.true_peak_dbtp == pytest.approx(true_peak_dbtp(mix), abs=0.05)
    assert integrated_loudness(mix) == pytest.approx(MIX_TARGET_LUFS, abs=0.3)
    np.testing.assert_allclose(stems["violin"], mix, atol=1e-6)
    # Peaky drums need more than that: the limiter does its share, the level gives the rest.
    hits = {"drums": drum_hits(SECONDS, 0.5)}
    mix, _, report = mix_stems(hits, {"drums": DRUMS}, {"drums": 0.0})
    assert report.limiting_db <= MAX_LIMITING_DB + LIMITER_MARGIN_DB + 0.05
    assert true_peak_dbtp(mix) <= TRUE_PEAK_CEILING_DBTP + 0.05
    assert report.peak_limited and integrated_loudness(mix) < MIX_TARGET_LUFS - 0.5
    # Sparse clicks would need far more limiting: the whole mix gives way instead.
    clicks = np.zeros(int(SECONDS * SAMPLE_RATE), np.float32)
    clicks[::SAMPLE_RATE] = 0.5
    mix, _, report = mix_stems({"drums": clicks}, {"drums": DRUMS}, {"drums": 0.0})
    assert report.peak_limited and "dBTP" in (report.message() or "")
    assert true_peak_dbtp(mix) == pytest.approx(TRUE_PEAK_CEILING_DBTP, abs=0.15)
    assert integrated_loudness(mix) < MIX_TARGET_LUFS - 1.0


def test_user_gains_and_mute_apply_on_top() -> None:
    dry = stems_of_very_different_levels()
    _, stems, report = mix_stems(dry, ROLES, PANS, gains_db={"bass": -6.0, "violin": 2.0})
    gaps = gaps_to_leader(stems)
    assert gaps["bass"] == pytest.approx(ROLE_OFFSET_LU[BASS] - 8.0, abs=0.5)
    assert gaps["cello"] == pytest.approx(ROLE_OFFSET_LU[HARMONY] - 2.0, abs=0.5)
    assert report.stems["bass"].user_db == -6.0
    muted = {name: audio for name, audio in dry.items() if name != "cello"}
    _, stems, _ = mix_stems(muted, ROLES, PANS)
    assert set(stems) == {"violin", "bass", "drums"}
    assert gaps_to_leader(stems)["drums"] == pytest.approx(ROLE_OFFSET_LU[DRUMS], abs=0.5)


def test_silent_and_all_but_silent_stems() -> None:
    dry = stems_of_very_different_levels()
    dry["cello"] = np.zeros_like(dry["cello"])
    dry["drums"] = sine(300.0, SECONDS, -66.0)  # audible to the meter, 45 dB from its target
    mix, stems, report = mix_stems(dry, ROLES, PANS)
    assert np.all(np.isfinite(mix)) and not np.any(stems["cello"])
    assert report.stems["cello"].lufs == -np.inf and report.stems["cello"].balance_db == 0.0
    entry = report.to_json("violin")["stems"]["cello"]  # type: ignore[index]
    assert entry["lufs"] is None and entry["lu_to_leader"] is None
    assert report.stems["drums"].balance_db == MAX_BOOST_DB
    assert gaps_to_leader(stems)["bass"] == pytest.approx(ROLE_OFFSET_LU[BASS], abs=0.5)


def test_downmix_is_the_channel_mean() -> None:
    stereo = np.stack([np.ones(8), np.zeros(8)], axis=1).astype(np.float32)
    np.testing.assert_allclose(downmix(stereo), 0.5)
    mono = tone(220.0, 0.1)
    assert np.array_equal(downmix(mono), mono)


def test_true_peak_matches_scipys_polyphase_oversampling() -> None:
    from scipy.signal import firwin, resample_poly

    from ensemble.mix import OVERSAMPLING_TAPS, oversampling_taps

    taps = firwin(OVERSAMPLING_TAPS, 1 / 4, window=("kaiser", 5.0))
    np.testing.assert_allclose(oversampling_taps(), 4 * taps, atol=1e-6)
    rng = np.random.default_rng(1)
    audio = (0.1 * rng.standard_normal((SAMPLE_RATE, 2))).astype(np.float32)
    audio[5000, 0], audio[5001, 0] = 0.9, -0.9  # an inter-sample over
    reference = max(
        float(np.abs(audio).max()),
        *(float(np.abs(resample_poly(audio[:, c], 4, 1, window=taps)).max()) for c in range(2)),
    )
    assert true_peak_dbtp(audio) == pytest.approx(20 * np.log10(reference), abs=1e-4)
