"""The feature frame: one grid, physically meaningful values."""

from __future__ import annotations

import numpy as np
import pytest

from ensemble.config import FRAME_RATE, HOP_LENGTH, SAMPLE_RATE
from ensemble.features import (
    a_weighted_loudness,
    chroma_features,
    extract_features,
    hz_to_midi,
    midi_to_hz,
    rms_envelope,
)
from tests.conftest import tone


def test_frames_share_one_grid(violin_like: np.ndarray) -> None:
    feats = extract_features(violin_like)
    n = len(violin_like) // HOP_LENGTH
    assert feats.n_frames == n
    assert feats.loudness_db.shape == feats.rms.shape == feats.confidence.shape == (n,)
    assert feats.chroma.shape == (12, n)
    assert abs(feats.duration_s - len(violin_like) / SAMPLE_RATE) < 1 / FRAME_RATE


def test_pitch_of_a_violin_like_tone(violin_like: np.ndarray) -> None:
    feats = extract_features(violin_like)
    voiced = feats.voiced
    assert voiced.mean() > 0.9
    cents = 1200 * np.log2(feats.f0_hz[voiced] / 440.0)
    assert np.median(np.abs(cents)) < 20


def test_silence_is_unvoiced_and_quiet() -> None:
    audio = np.concatenate([np.zeros(SAMPLE_RATE, np.float32), tone(220.0, 1.0)])
    feats = extract_features(audio)
    assert feats.voiced[10:90].mean() < 0.05
    assert feats.loudness_db[10:90].max() < -80
    assert feats.loudness_db[120:190].min() > -30
    assert np.all(feats.chroma[:, 10:90] == 0)


def test_loudness_tracks_level_in_db() -> None:
    quiet, loud = tone(1000.0, 1.0, amp=0.05), tone(1000.0, 1.0, amp=0.5)
    gap = np.median(a_weighted_loudness(loud)) - np.median(a_weighted_loudness(quiet))
    assert abs(gap - 20.0) < 0.5
    # A-weighting: a 50 Hz tone reads much quieter than a 1 kHz tone of the same amplitude.
    assert (
        np.median(a_weighted_loudness(tone(50.0, 1.0))) < np.median(a_weighted_loudness(loud)) - 20
    )


def test_rms_of_a_sine() -> None:
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    sine = (0.5 * np.sin(2 * np.pi * 500 * t)).astype(np.float32)
    rms = rms_envelope(sine)
    assert abs(np.median(rms) - 0.5 / np.sqrt(2)) < 1e-3


def test_chroma_peaks_at_pitch_class() -> None:
    chroma = chroma_features(tone(midi_to_hz(60).item(), 1.0))  # C4
    assert np.argmax(chroma[:, 20:80].mean(axis=1)) == 0
    assert np.allclose(chroma[:, 20:80].sum(axis=0), 1.0, atol=1e-4)


def test_midi_conversions() -> None:
    assert hz_to_midi(np.array([440.0]))[0] == 69.0
    assert hz_to_midi(np.array([0.0]))[0] == 0.0
    np.testing.assert_allclose(midi_to_hz(hz_to_midi(np.array([123.4]))), [123.4])


@pytest.mark.filterwarnings("ignore:n_fft=1024 is too large")  # librosa on short inputs
def test_numpy_spectra_match_librosa() -> None:
    import librosa

    from ensemble.audio import resample
    from ensemble.features import N_FFT, _power_spectrogram, chroma_filterbank

    rng = np.random.default_rng(1)
    for n in (HOP_LENGTH, 1000, 16_037):
        audio = (0.3 * rng.standard_normal(n)).astype(np.float32)
        ref = np.abs(librosa.stft(audio, n_fft=N_FFT, hop_length=HOP_LENGTH)) ** 2
        mine = _power_spectrogram(audio)
        np.testing.assert_allclose(mine, ref[:, : n // HOP_LENGTH], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        chroma_filterbank(), librosa.filters.chroma(sr=SAMPLE_RATE, n_fft=N_FFT, tuning=0.0)
    )
    x = (0.2 * rng.standard_normal(44_100)).astype(np.float32)
    np.testing.assert_allclose(
        resample(x, 44_100, SAMPLE_RATE),
        librosa.resample(x, orig_sr=44_100, target_sr=SAMPLE_RATE, res_type="soxr_hq"),
    )
