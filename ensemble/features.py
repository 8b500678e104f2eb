"""The feature frame: frame-synchronous pitch, loudness, RMS and chroma at FRAME_RATE.

Every module (decoders, conductor, RAG, metrics) reads these arrays, so they share one grid:
frame ``j`` is centred on sample ``j * HOP_LENGTH`` and a clip of N samples has ``N // HOP_LENGTH``
frames.

Pitch comes from SwiftF0 (a 135 KB ONNX CNN): on this 2-core CPU it tracks 10 s of audio in about
0.1 s with calibrated voicing, where librosa.pyin needs ~5 s warm (30 s cold) and librosa.yin makes
octave errors and gives no voicing (bench/features.py measures all three). pYIN stays in
`ensemble.metrics` for the melody plot the seed specifies.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ensemble.config import FRAME_RATE, HOP_LENGTH, SAMPLE_RATE

VOICED_THRESHOLD = 0.5  # SwiftF0's confidence is calibrated so that >= 0.5 means voiced
N_FFT = 1024  # one STFT serves loudness and chroma: 64 ms window, 15.6 Hz bins at 16 kHz
PITCH_FMIN, PITCH_FMAX = 46.875, 2093.75  # SwiftF0's trained range (F#1..C7)
LOUDNESS_FLOOR_DB = -100.0
PITCH_BLOCK = 5 * SAMPLE_RATE  # samples per pitch-tracker call (its scratch grows with them)


@dataclass
class FeatureFrame:
    """Frame-synchronous features of one mono clip (T frames at FRAME_RATE)."""

    f0_hz: np.ndarray  # (T,) tracked fundamental, Hz (meaningful where voiced)
    confidence: np.ndarray  # (T,) voicing confidence in [0, 1]
    loudness_db: np.ndarray  # (T,) A-weighted power, dB (silence ~ -100)
    rms: np.ndarray  # (T,) linear RMS amplitude
    chroma: np.ndarray  # (12, T) energy-normalised pitch-class profile

    @property
    def n_frames(self) -> int:
        return len(self.f0_hz)

    @property
    def duration_s(self) -> float:
        return self.n_frames / FRAME_RATE

    @property
    def voiced(self) -> np.ndarray:
        """(T,) bool: frames where the tracker is confident a pitch is present."""
        return self.confidence >= VOICED_THRESHOLD

    def slice(self, start: int, stop: int) -> FeatureFrame:
        """Frames ``start:stop`` as a new frame (views, no copies)."""
        return FeatureFrame(
            self.f0_hz[start:stop],
            self.confidence[start:stop],
            self.loudness_db[start:stop],
            self.rms[start:stop],
            self.chroma[:, start:stop],
        )


def n_frames_for(n_samples: int) -> int:
    """Frames covering a clip of ``n_samples`` samples on the project grid."""
    return n_samples // HOP_LENGTH


@lru_cache(maxsize=2)
def _pitch_tracker(threads: int):
    from swift_f0 import SwiftF0

    # spin=False: the ONNX thread pool sleeps between calls instead of busy-waiting, which matters
    # on a 2-core machine shared with the decoders and a web server. ONNX Runtime sessions are
    # thread-safe; with one thread a run executes in its caller, so parallel callers share one.
    return SwiftF0(threads=threads, spin=False)


def track_pitch(audio: np.ndarray, threads: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """SwiftF0 pitch on the project grid.

    Args:
        audio: (N,) float mono at SAMPLE_RATE.
        threads: ONNX threads for this call: 2 for one clip at a time (an upload), 1 when the
            caller analyses several files in parallel threads (an index build).

    Returns:
        f0_hz (T,) float32 and confidence (T,) float32 in [0, 1], T = N // HOP_LENGTH.
        SwiftF0 runs on 16 ms frames; its output is interpolated in the log-frequency domain so
        glides stay glides.
    """
    n = n_frames_for(len(audio))
    if n == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    # Streamed in PITCH_BLOCK pieces: the same frames as one `detect` call (SwiftF0 keeps the
    # model's context between pushes), but ONNX Runtime's arena grows with the audio it is given
    # at once, and keeps that size: ~190 MB for 30 s, ~20 MB for 5 s.
    stream = _pitch_tracker(threads).stream(fmin=PITCH_FMIN, fmax=PITCH_FMAX)
    audio = np.asarray(audio, np.float32)
    pieces = [stream.push(audio[start : start + PITCH_BLOCK], SAMPLE_RATE)
              for start in range(0, len(audio), PITCH_BLOCK)]  # fmt: skip
    pieces.append(stream.flush())
    stamps, pitch, confidence = (np.concatenate([getattr(piece, field) for piece in pieces])
                                 for field in ("timestamps", "pitch_hz", "confidence"))  # fmt: skip
    times = np.arange(n) / FRAME_RATE
    log_f0 = np.log2(np.clip(pitch, PITCH_FMIN, PITCH_FMAX))
    f0 = 2.0 ** np.interp(times, stamps, log_f0)
    confidence = np.interp(times, stamps, confidence)
    return f0.astype(np.float32), confidence.astype(np.float32)


STFT_BLOCK_FRAMES = 512  # frames transformed at once: bounds the STFT's scratch memory (~5 MB)


@lru_cache(maxsize=1)
def _hann() -> np.ndarray:
    """Periodic Hann window of N_FFT (scipy's get_window('hann', fftbins=True), librosa's)."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)


def _power_spectrogram(audio: np.ndarray) -> np.ndarray:
    """(1 + N_FFT/2, T) float32 power spectrum on the project grid: centred, zero-padded Hann
    frames, as librosa.stft computes them. numpy's FFT needs no JIT warm-up (librosa's first
    call costs seconds) and blocks of frames keep the scratch memory small on long inputs."""
    audio = np.asarray(audio, np.float32)
    n = n_frames_for(len(audio))
    padded = np.pad(audio, (N_FFT // 2, N_FFT // 2))
    if len(padded) < N_FFT:
        padded = np.pad(padded, (0, N_FFT - len(padded)))
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP_LENGTH][:n]
    power = np.empty((N_FFT // 2 + 1, n), np.float32)
    window = _hann()
    for start in range(0, n, STFT_BLOCK_FRAMES):
        spec = np.fft.rfft(frames[start : start + STFT_BLOCK_FRAMES] * window, axis=1)
        power[:, start : start + STFT_BLOCK_FRAMES] = (spec.real**2 + spec.imag**2).T
    return power


def a_weighting_db(freqs_hz: np.ndarray, min_db: float = -100.0) -> np.ndarray:
    """IEC 61672 A-weighting in dB (the formula librosa.A_weighting uses), floored at min_db."""
    f_sq = np.asarray(freqs_hz, np.float64) ** 2
    c = np.array([12194.217, 20.598997, 107.65265, 737.86223]) ** 2
    weights = 2.0 + 20.0 * (
        np.log10(c[0])
        + 2 * np.log10(f_sq)
        - np.log10(f_sq + c[0])
        - np.log10(f_sq + c[1])
        - 0.5 * np.log10(f_sq + c[2])
        - 0.5 * np.log10(f_sq + c[3])
    )
    return np.maximum(min_db, weights)


@lru_cache(maxsize=1)
def _a_weights() -> np.ndarray:
    # The DC bin has no A-weight (log of 0); 1 Hz is already -100 dB, which is what it means.
    freqs = np.maximum(np.fft.rfftfreq(N_FFT, 1.0 / SAMPLE_RATE), 1.0)
    return (10.0 ** (a_weighting_db(freqs) / 10.0)).astype(np.float32)


@lru_cache(maxsize=1)
def chroma_filterbank() -> np.ndarray:
    """(12, 1 + N_FFT/2) chroma weights of librosa.filters.chroma(sr, N_FFT, tuning=0) with its
    defaults (Gaussian bumps per pitch class, columns L2-normalised, octave weighting around
    C5 +- 2 octaves, rows starting at C), computed here so no librosa import is needed."""
    n_chroma, ctroct, octwidth = 12, 5.0, 2.0
    frequencies = np.linspace(0, SAMPLE_RATE, N_FFT, endpoint=False)[1:]
    frqbins = n_chroma * np.log2(frequencies / (440.0 / 16))
    # The 0 Hz bin is made up 1.5 octaves below bin 1, as librosa does.
    frqbins = np.concatenate(([frqbins[0] - 1.5 * n_chroma], frqbins))
    binwidth = np.concatenate((np.maximum(frqbins[1:] - frqbins[:-1], 1.0), [1]))
    distance = np.subtract.outer(frqbins, np.arange(n_chroma, dtype=float)).T
    half = np.round(n_chroma / 2)
    distance = np.remainder(distance + half + 10 * n_chroma, n_chroma) - half
    weights = np.exp(-0.5 * (2 * distance / binwidth) ** 2)
    weights /= np.linalg.norm(weights, axis=0, keepdims=True)
    weights *= np.exp(-0.5 * ((frqbins / n_chroma - ctroct) / octwidth) ** 2)
    weights = np.roll(weights, -3, axis=0)
    return np.ascontiguousarray(weights[:, : N_FFT // 2 + 1], dtype=np.float32)


def _loudness_from_power(power: np.ndarray) -> np.ndarray:
    # Mean A-weighted power per frame, normalised so a full-scale 1 kHz sine reads about 0 dB.
    # A product with the weights, not a weighted copy of the whole spectrogram.
    weighted = (_a_weights() @ power).astype(np.float64) / (N_FFT * N_FFT / 8.0)
    return np.maximum(10.0 * np.log10(weighted + 1e-12), LOUDNESS_FLOOR_DB).astype(np.float32)


def a_weighted_loudness(audio: np.ndarray) -> np.ndarray:
    """(T,) A-weighted loudness in dB of a (N,) signal; ~0 dB for a full-scale 1 kHz sine."""
    return _loudness_from_power(_power_spectrogram(audio))


def rms_envelope(audio: np.ndarray) -> np.ndarray:
    """(T,) RMS over 2-hop (20 ms) centred windows: frame j spans hops j - 1 and j."""
    audio = np.asarray(audio, np.float32)
    n = n_frames_for(len(audio))
    hops = audio[: n * HOP_LENGTH].reshape(n, HOP_LENGTH)
    # Energy per hop, summed in float64 a block of hops at a time (no float64 copy of a long
    # input); a window is two hops.
    energy = np.zeros(n + 1)
    for start in range(0, n, STFT_BLOCK_FRAMES):
        block = hops[start : start + STFT_BLOCK_FRAMES].astype(np.float64)
        energy[start + 1 : start + 1 + len(block)] = np.einsum("ij,ij->i", block, block)
    return np.sqrt((energy[:-1] + energy[1:]) / (2 * HOP_LENGTH)).astype(np.float32)


def _chroma_from_power(power: np.ndarray) -> np.ndarray:
    # tuning=0: rendered and recorded music is near A440, and estimating it per clip both costs
    # time and warns on quiet clips with no spectral peaks.
    chroma = chroma_filterbank() @ power
    # Energy-normalise per frame but keep silent frames at zero rather than a flat profile.
    total = chroma.sum(axis=0, keepdims=True)
    return np.where(total > 1e-8, chroma / np.maximum(total, 1e-8), 0.0).astype(np.float32)


def chroma_features(audio: np.ndarray) -> np.ndarray:
    """(12, T) pitch-class energy profile (each voiced frame sums to 1; silence is all zeros)."""
    return _chroma_from_power(_power_spectrogram(audio))


def extract_features(audio: np.ndarray, threads: int = 2) -> FeatureFrame:
    """All frame features of a (N,) mono SAMPLE_RATE signal; one STFT feeds loudness and chroma.
    ``threads`` is the pitch tracker's (see `track_pitch`)."""
    audio = np.asarray(audio, np.float32)
    f0, confidence = track_pitch(audio, threads)
    power = _power_spectrogram(audio)
    return FeatureFrame(
        f0_hz=f0,
        confidence=confidence,
        loudness_db=_loudness_from_power(power),
        rms=rms_envelope(audio),
        chroma=_chroma_from_power(power),
    )


def hz_to_midi(f0_hz: np.ndarray) -> np.ndarray:
    """MIDI note numbers (float) of frequencies in Hz; non-positive input maps to 0."""
    f0 = np.asarray(f0_hz, np.float64)
    return np.where(f0 > 0, 69.0 + 12.0 * np.log2(np.maximum(f0, 1e-6) / 440.0), 0.0)


def midi_to_hz(midi: np.ndarray) -> np.ndarray:
    """Frequencies in Hz of (float) MIDI note numbers."""
    return 440.0 * 2.0 ** ((np.asarray(midi, np.float64) - 69.0) / 12.0)
