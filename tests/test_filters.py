"""The numpy filters of the perform path against the scipy/pyloudnorm code they replace, and the
chunked stages against doing everything at once (same results, bounded scratch)."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest

from ensemble import filters, loudness
from ensemble.config import SAMPLE_RATE

RATES = (16_000, 44_100)


def _pyloudnorm(audio: np.ndarray, rate: int, block_s: float = 0.4) -> float:
    import pyloudnorm

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        meter = pyloudnorm.Meter(rate, block_size=block_s)
        lufs = float(meter.integrated_loudness(np.asarray(audio, np.float64)))
    return lufs if np.isfinite(lufs) else float("-inf")


def _signals(rate: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(rate)
    t = np.arange(int(6.3 * rate)) / rate
    noise = rng.standard_normal((len(t), 2)) * [0.1, 0.03]
    return {
        "sine": 0.3 * np.sin(2 * np.pi * 997 * t),
        "stereo noise": noise,
        "bursts (relative gate)": 0.2 * rng.standard_normal(len(t)) * (np.sin(3 * t) > 0.6),
        "bass under the high-pass": 0.5 * np.sin(2 * np.pi * 30 * t),
        "five channels": 0.05 * rng.standard_normal((len(t), 5)),
        "under the absolute gate": 1e-4 * np.sin(2 * np.pi * 100 * t),
        "silent": np.zeros(len(t)),
    }


@pytest.mark.parametrize("rate", RATES)
def test_integrated_loudness_is_pyloudnorms(rate: int) -> None:
    for name, audio in _signals(rate).items():
        for signal in (audio, audio.astype(np.float32)):
            want, got = _pyloudnorm(signal, rate), loudness.integrated_loudness(signal, rate)
            assert got == pytest.approx(want, abs=0.01) or got == want == -np.inf, name


@pytest.mark.parametrize("rate", RATES)
def test_short_clips_are_one_block_of_their_own_length(rate: int) -> None:
    rng = np.random.default_rng(1)
    for n in (int(0.25 * rate), int(0.4 * rate) + 1, 12_345):
        clip = 0.2 * rng.standard_normal((n, 2))
        block = min(0.4, n / rate)
        assert loudness.integrated_loudness(clip, rate, block) == pytest.approx(
            _pyloudnorm(clip, rate, block), abs=0.01
        )


@pytest.mark.parametrize("rate", RATES)
def test_k_weighting_is_pyloudnorms_filter_chain(rate: int) -> None:
    import pyloudnorm

    x = np.random.default_rng(2).standard_normal(3 * rate)
    want = x
    for stage in pyloudnorm.Meter(rate)._filters.values():
        want = stage.apply_filter(want)
    got = filters.causal_filter(x, loudness.k_weighting_response(rate))
    np.testing.assert_allclose(got, want, atol=1e-9)


@pytest.mark.parametrize("rate", (*RATES, 96_000))
def test_butterworth_biquad_is_scipys(rate: int) -> None:
    from scipy.signal import butter, sosfilt

    b, a = filters.butter_lowpass2(2000.0, rate)
    sos = butter(2, 2000.0, fs=rate, output="sos")
    np.testing.assert_allclose(np.r_[b, a], sos[0], atol=1e-12)
    noise = np.random.default_rng(3).standard_normal((int(1.6 * rate), 2))
    got = filters.causal_filter(noise, filters.biquad_response([(b, a)]))
    np.testing.assert_allclose(got, sosfilt(sos, noise, axis=0), atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_moving_average_and_sliding_minimum_are_scipy_ndimages(dtype: type) -> None:
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    rng = np.random.default_rng(4)
    for n in (1, 2, 7, 100, 3001):
        x = rng.standard_normal(n).astype(dtype)
        for size in (1, 2, 3, 100, 101, 883):
            average = filters.moving_average(x, size)
            assert average.dtype == dtype
            np.testing.assert_allclose(average, uniform_filter1d(x, size, mode="nearest"),
                                       atol=1e-6 if dtype == np.float32 else 1e-12)  # fmt: skip
            np.testing.assert_array_equal(filters.sliding_minimum(x, size),
                                          minimum_filter1d(x, size, mode="nearest"))  # fmt: skip


def test_fast_length_is_scipys_next_fast_len() -> None:
    from scipy.fft import next_fast_len

    for n in (1, 2, 7, 97, 1000, 4095, 70_783, 1_920_001):
        assert filters.fast_length(n) == next_fast_len(n, real=True)


@pytest.mark.parametrize("rate", RATES)
def test_room_is_the_scipy_room(rate: int) -> None:
    from scipy.signal import butter, sosfilt

    from ensemble import mix

    n = round(mix.ROOM_SECONDS * rate)
    t = np.arange(n)[:, None] / rate
    noise = np.random.default_rng(mix.ROOM_SEED).standard_normal((n, 2))
    low = sosfilt(butter(2, mix.ROOM_SPLIT_HZ, fs=rate, output="sos"), noise, axis=0)
    ir = (low * 10 ** (-3 * t / mix.ROOM_RT60_LOW_S)
          + (noise - low) * 10 ** (-3 * t / mix.ROOM_RT60_HIGH_S))  # fmt: skip
    ir *= np.clip(t / mix.ROOM_ONSET_S, 0.0, 1.0)
    ir = np.concatenate([np.zeros((round(mix.ROOM_PREDELAY_S * rate), 2)), ir])
    ir /= np.sqrt(np.sum(ir**2, axis=0))
    np.testing.assert_allclose(mix.room_impulse_response(rate), ir, atol=1e-6)


def test_limiter_gain_is_the_scipy_limiters() -> None:
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    from ensemble import mix

    envelope = np.abs(np.random.default_rng(5).standard_normal(20_000)).astype(np.float32) * 1.5
    ceiling = 10.0 ** ((mix.TRUE_PEAK_CEILING_DBTP - mix.LIMITER_MARGIN_DB) / 20.0)
    need = np.minimum(1.0, ceiling / np.maximum(envelope, 1e-12))
    window = round(mix.LIMITER_WINDOW_S * SAMPLE_RATE)
    held = minimum_filter1d(need, 2 * window + 1, mode="nearest")
    want = uniform_filter1d(held, window + 1, mode="nearest")
    got = mix.limiter_gain(envelope, mix.TRUE_PEAK_CEILING_DBTP)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_reverb_in_blocks_is_one_long_convolution() -> None:
    from scipy.signal import fftconvolve

    from ensemble import mix

    audio = np.random.default_rng(6).standard_normal(3 * mix.ROOM_BLOCK + 123).astype(np.float32)
    ir = mix.room_impulse_response(SAMPLE_RATE).astype(np.float64)
    want = fftconvolve(audio.astype(np.float64)[:, None], ir, axes=0)[: len(audio)]
    got = mix.reverb_return(audio, 0.0)
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_banded_viterbi_is_the_dense_one() -> None:
    """Exact states, ties and zero observations included (the dense max over every pair of
    states, first index on ties, as librosa's viterbi)."""
    from ensemble import pyin

    def dense(observation: np.ndarray, transition: np.ndarray) -> np.ndarray:
        tiny = np.finfo(np.float64).tiny
        log_trans, log_prob = np.log(transition + tiny), np.log(observation + tiny).T
        value = log_prob[0] + np.log(1.0 / len(transition) + tiny)
        ptr = np.zeros(log_prob.shape, np.int64)
        for t in range(1, len(log_prob)):
            scores = value[:, None] + log_trans  # [from, to]
            ptr[t] = np.argmax(scores, axis=0)
            value = log_prob[t] + scores[ptr[t], np.arange(len(value))]
        states = [int(np.argmax(value))]
        for t in range(len(log_prob) - 1, 0, -1):
            states.insert(0, int(ptr[t, states[0]]))
        return np.asarray(states)

    rng = np.random.default_rng(7)
    for trial in range(12):
        n_bins, width = 24, 7
        observation = rng.random((2 * n_bins, 60)) ** 8 * (rng.random((2 * n_bins, 60)) < 0.3)
        if trial % 3 == 0:
            observation[:, 20:35] = 0.0  # nothing observed: everything ties
        if trial % 3 == 1:
            observation = observation.round(1)
        np.testing.assert_array_equal(
            pyin._viterbi(observation, pyin._band(n_bins, width)),
            dense(observation, pyin._transition(n_bins, width)),
        )


def test_rms_envelope_is_the_centred_window_mean() -> None:
    from ensemble.config import HOP_LENGTH
    from ensemble.features import rms_envelope

    audio = np.random.default_rng(8).standard_normal(5 * SAMPLE_RATE + 77).astype(np.float32)
    n = len(audio) // HOP_LENGTH
    padded = np.pad(audio, (HOP_LENGTH, 3 * HOP_LENGTH)).astype(np.float64)
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * HOP_LENGTH)[::HOP_LENGTH][:n]
    want = np.sqrt(np.mean(windows**2, axis=1)).astype(np.float32)
    np.testing.assert_allclose(rms_envelope(audio), want, rtol=1e-6)


def test_streamed_pitch_is_one_detect_call() -> None:
    from ensemble.features import PITCH_FMAX, PITCH_FMIN, _pitch_tracker, track_pitch

    t = np.arange(12 * SAMPLE_RATE) / SAMPLE_RATE
    audio = (0.3 * np.sin(2 * np.pi * np.cumsum(220 + 110 * np.sin(t)) / SAMPLE_RATE)
             * (np.sin(2 * t) > -0.5)).astype(np.float32)  # fmt: skip
    whole = _pitch_tracker(2).detect(audio, SAMPLE_RATE, fmin=PITCH_FMIN, fmax=PITCH_FMAX)
    times = np.arange(len(audio) // 160) / 100
    f0, confidence = track_pitch(audio)
    np.testing.assert_allclose(confidence, np.interp(times, whole.timestamps, whole.confidence),
                               atol=1e-6)  # fmt: skip
    want = 2.0 ** np.interp(times, whole.timestamps,
                            np.log2(np.clip(whole.pitch_hz, PITCH_FMIN, PITCH_FMAX)))  # fmt: skip
    np.testing.assert_allclose(f0, want, rtol=1e-5)


def test_decoder_synthesis_in_chunks_is_the_same_audio(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from ensemble import dsp

    g = torch.Generator().manual_seed(0)
    f0 = 100 + 300 * torch.rand(1, 500, generator=g)
    mags = torch.rand(1, 500, 65, generator=g)
    noise = torch.rand(1, 501, 160, generator=g) * 2 - 1
    whole = dsp.oscillator_phase(f0), dsp.filtered_noise(mags, noise=noise)
    monkeypatch.setattr(dsp, "PHASE_CHUNK_FRAMES", 37)
    monkeypatch.setattr(dsp, "NOISE_CHUNK_FRAMES", 41)
    chunked = dsp.oscillator_phase(f0), dsp.filtered_noise(mags, noise=noise)
    for a, b in zip(whole, chunked, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_long_signals_are_measured_without_a_filtered_copy() -> None:
    """Peak numpy memory of the mix stage's loudness and reverb on 2 minutes of 44.1 kHz stereo
    (42 MB): the blocks' scratch, not a float64 copy of the signal (85 MB)."""
    from ensemble import mix

    rate = 44_100
    audio = np.random.default_rng(9).standard_normal((120 * rate, 2)).astype(np.float32) * 0.1
    tracemalloc.start()
    try:
        loudness.integrated_loudness(audio, rate)
        _, loudness_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        mix.reverb_return(audio[:, 0], -10.0, rate)
        _, reverb_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert loudness_peak < 20e6
    assert reverb_peak < audio.nbytes + 20e6  # its (N, 2) output and blocks
