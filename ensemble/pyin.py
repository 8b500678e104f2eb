"""pYIN (Mauch & Dixon, 2014) in numpy: librosa.pyin's algorithm, step for step, without librosa.

The song metrics need pYIN for the seed's melody plot. librosa's pyin is right but costs ~1.7 s
of imports (scipy.signal, scipy.stats, numba) on every CLI call that writes metrics, more than
the whole performance takes; this port gives the same f0 and voicing on the same settings
(tests/test_metrics.py compares them) with numpy alone. Steps and defaults follow
librosa 0.11 `librosa.pyin`: YIN's cumulative mean normalised difference, parabolic refinement,
a beta prior over thresholds and a Boltzmann prior over troughs, then Viterbi decoding of
voiced/unvoiced pitch states with a triangular local transition.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ensemble.filters import fast_length

BETA_PARAMETERS = (2, 18)
BOLTZMANN_PARAMETER = 2.0
MAX_TRANSITION_RATE = 35.92  # octaves per second
SWITCH_PROB = 0.01
NO_TROUGH_PROB = 0.01
BLOCK_FRAMES = 256  # frames per FFT batch: ~20 MB of scratch however long the signal


def _frames(y: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """(frame_length, n_frames) centred, zero-padded frames (librosa: center=True, constant)."""
    y = np.pad(y, (frame_length // 2, frame_length // 2))
    return np.lib.stride_tricks.sliding_window_view(y, frame_length)[::hop_length].T


def _cmnd(frames: np.ndarray, min_period: int, max_period: int) -> np.ndarray:
    """YIN's cumulative mean normalised difference, (max_period - min_period + 1, n_frames),
    computed BLOCK_FRAMES frames at a time (each frame is independent): the FFT scratch of a
    2-minute signal at once would be ~200 MB."""
    return np.concatenate(
        [
            _cmnd_block(frames[:, start : start + BLOCK_FRAMES], min_period, max_period)
            for start in range(0, frames.shape[1], BLOCK_FRAMES)
        ],
        axis=1,
    )


def _cmnd_block(frames: np.ndarray, min_period: int, max_period: int) -> np.ndarray:
    n_pad = fast_length(2 * frames.shape[0] - 1)
    spectrum = np.fft.rfft(frames, n=n_pad, axis=0)
    acf = np.fft.irfft(spectrum.real**2 + spectrum.imag**2, n=n_pad, axis=0)[: max_period + 1]
    energy = np.cumsum(np.square(frames[:max_period]), axis=0)  # only these lags are used
    diff = np.empty((max_period + 1, frames.shape[1]), energy.dtype)
    diff[0] = 0
    diff[1 : max_period + 1] = 2 * (acf[0:1] - acf[1 : max_period + 1]) - energy[:max_period]
    lags = np.arange(1, max_period + 1)[:, None]
    mean = np.cumsum(diff[1 : max_period + 1], axis=0) / lags
    denominator = mean[min_period - 1 : max_period]
    return diff[min_period : max_period + 1] / (denominator + np.finfo(denominator.dtype).tiny)


def _parabolic_shifts(x: np.ndarray) -> np.ndarray:
    """Offset of the parabola's optimum through each bin and its neighbours (0 when it lies
    more than a bin away, and at both edges), along axis 0."""
    shifts = np.zeros_like(x)
    left, mid, right = x[:-2], x[1:-1], x[2:]
    a = right + left - 2 * mid
    b = (right - left) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        shifts[1:-1] = np.where(np.abs(b) >= np.abs(a), 0, -b / a)
    return shifts


def _beta_cdf(x: np.ndarray, a: int, b: int) -> np.ndarray:
    """CDF of Beta(a, b) for integer a, b: P(Binomial(a + b - 1, x) >= a)."""
    n = a + b - 1
    return sum(math.comb(n, j) * x**j * (1 - x) ** (n - j) for j in range(a, n + 1))


def _boltzmann_pmf(k: np.ndarray, lam: float, n: np.ndarray) -> np.ndarray:
    """Truncated discrete exponential on 0..n-1 (scipy.stats.boltzmann); NaN where n < 1."""
    with np.errstate(divide="ignore", invalid="ignore"):
        pmf = (1 - math.exp(-lam)) * np.exp(-lam * k) / (1 - np.exp(-lam * n))
    return np.where(n >= 1, np.where((k >= 0) & (k < n), pmf, 0.0), np.nan)


def _troughs(yin: np.ndarray) -> np.ndarray:
    """(periods, frames) bool, every frame at once: librosa.util.localmin along axis 0 (x[i] <
    x[i-1] and x[i] <= x[i+1], edges padded by repetition), the first period a trough when it is
    under the second (pYIN's rule)."""
    padded = np.pad(yin, ((1, 1), (0, 0)), mode="edge")
    troughs = (yin < padded[:-2]) & (yin <= padded[2:])
    troughs[0] = yin[0] < yin[1]
    return troughs


def _observations(
    yin: np.ndarray,
    shifts: np.ndarray,
    sr: float,
    min_period: int,
    fmin: float,
    n_bins: int,
    bins_per_semitone: int,
    n_thresholds: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(2 n_bins, T) observation probabilities (voiced bins, then unvoiced) and (T,) voicing."""
    thresholds = np.linspace(0, 1, n_thresholds + 1)
    beta_probs = np.diff(_beta_cdf(thresholds, *BETA_PARAMETERS))
    probs = np.zeros_like(yin)
    for i, (frame, troughs) in enumerate(zip(yin.T, _troughs(yin).T, strict=True)):
        (where,) = np.nonzero(troughs)
        if len(where) == 0:
            continue
        heights = frame[where]
        below = np.less.outer(heights, thresholds[1:])
        positions = np.cumsum(below, axis=0) - 1
        prior = _boltzmann_pmf(positions, BOLTZMANN_PARAMETER, np.count_nonzero(below, axis=0))
        prior[~below] = 0
        trough_probs = prior.dot(beta_probs)
        best = np.argmin(heights)
        n_above = np.count_nonzero(~below[best, :])
        trough_probs[best] += NO_TROUGH_PROB * np.sum(beta_probs[:n_above])
        probs[where, i] = trough_probs
    period, frame_index = np.nonzero(probs)
    f0 = sr / (min_period + period + shifts[period, frame_index])
    index = np.clip(np.round(12 * bins_per_semitone * np.log2(f0 / fmin)), 0, n_bins).astype(int)
    observation = np.zeros((2 * n_bins, yin.shape[1]))
    observation[index, frame_index] = probs[period, frame_index]
    voiced = np.clip(np.sum(observation[:n_bins], axis=0), 0, 1)
    observation[n_bins:] = (1 - voiced) / n_bins
    return observation, voiced


def _triangle(width: int) -> np.ndarray:
    """Symmetric triangular window (scipy.signal.get_window('triangle', width, fftbins=False))."""
    n = np.arange(1, (width + 1) // 2 + 1)
    if width % 2:
        w = 2 * n / (width + 1.0)
        return np.r_[w, w[-2::-1]]
    w = (2 * n - 1.0) / width
    return np.r_[w, w[::-1]]


def _transition(n_bins: int, width: int) -> np.ndarray:
    """librosa.sequence.transition_local(triangle, wrap=False), kron'd with the voicing switch."""
    local = np.zeros((n_bins, n_bins))
    window = _triangle(width)
    row = np.zeros(n_bins)
    lpad = (n_bins - width) // 2
    row[lpad : lpad + width] = window
    for i in range(n_bins):
        rolled = np.roll(row, n_bins // 2 + i + 1)
        rolled[min(n_bins, i + width // 2 + 1) :] = 0
        rolled[: max(0, i - width // 2)] = 0
        local[i] = rolled
    local /= local.sum(axis=1, keepdims=True)
    switch = np.array([[1 - SWITCH_PROB, SWITCH_PROB], [SWITCH_PROB, 1 - SWITCH_PROB]])
    return np.kron(switch, local)


@functools.lru_cache(maxsize=4)
def _band(n_bins: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_transition`'s band per target state j: the states i with transition[i, j] > 0 in
    ascending order (2 n_bins, K; short rows repeat their last), their log(transition + tiny),
    and (2 n_bins, 2 n_bins) bool, i in j's band at [j, i]. Cached (read-only), like the
    transition: every signal of a performance uses the same one."""
    transition = _transition(n_bins, width)
    in_band = transition.T > 0
    size = int(in_band.sum(axis=1).max())
    sources = np.empty((len(in_band), size), np.int64)
    for j, row in enumerate(in_band):
        (found,) = np.nonzero(row)
        sources[j] = np.pad(found, (0, size - len(found)), mode="edge")
    tiny = np.finfo(np.float64).tiny
    log_band = np.log(transition[sources, np.arange(len(in_band))[:, None]] + tiny)
    for array in (sources, log_band, in_band):
        array.setflags(write=False)
    return sources, log_band, in_band


def _viterbi(observation: np.ndarray, band: tuple[np.ndarray, np.ndarray, np.ndarray]
             ) -> np.ndarray:  # fmt: skip
    """Most likely state path (librosa.sequence.viterbi, uniform start, log domain).

    The transition is banded (pitch moves a few bins per frame) and every transition outside
    the band is log(0 + tiny), one constant. So each state's best predecessor is its best one
    inside the band, unless the best state overall (by value + that constant) lies outside it and
    scores at least as high: the same maximum and the same first index among ties as comparing
    every pair of states, at a quarter of the cost.
    """
    epsilon = np.finfo(observation.dtype).tiny
    n_states, n_steps = observation.shape
    sources, log_band, in_band = band
    outside = np.log(epsilon)
    log_prob = np.log(observation + epsilon).T
    value = log_prob[0] + np.log(np.full(n_states, 1.0 / n_states) + epsilon)
    ptr = np.zeros((n_steps, n_states), np.int64)
    rows = np.arange(n_states)
    for t in range(1, n_steps):
        scores = value[sources] + log_band  # [j, k]: from state sources[j, k] into j
        best = np.argmax(scores, axis=1)
        inside, origin = scores[rows, best], sources[rows, best]
        far_all = value + outside
        top = int(np.argmax(far_all))
        far = far_all[top]
        switch = ~in_band[:, top] & ((far > inside) | ((far == inside) & (top < origin)))
        ptr[t] = np.where(switch, top, origin)
        value = log_prob[t] + np.where(switch, far, inside)
    states = np.zeros(n_steps, np.int64)
    states[-1] = np.argmax(value)
    for t in range(n_steps - 2, -1, -1):
        states[t] = ptr[t + 1, states[t + 1]]
    return states


def pyin(
    y: np.ndarray,
    *,
    fmin: float,
    fmax: float,
    sr: float,
    frame_length: int = 2048,
    hop_length: int | None = None,
    n_thresholds: int = 100,
    resolution: float = 0.1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """f0 (Hz, NaN where unvoiced), voiced flag and voiced probability per frame, as
    ``librosa.pyin(y, fmin=..., fmax=..., sr=..., ...)`` returns them for a (N,) signal."""
    hop_length = hop_length or frame_length // 4
    frames = _frames(np.asarray(y), frame_length, hop_length)
    min_period = int(np.floor(sr / fmax))
    max_period = min(int(np.ceil(sr / fmin)), frame_length - 1)
    yin = _cmnd(frames, min_period, max_period)
    shifts = _parabolic_shifts(yin)
    bins_per_semitone = int(np.ceil(1.0 / resolution))
    n_bins = int(np.floor(12 * bins_per_semitone * np.log2(fmax / fmin))) + 1
    observation, voiced_prob = _observations(
        yin, shifts, sr, min_period, fmin, n_bins, bins_per_semitone, n_thresholds
    )
    per_frame = round(MAX_TRANSITION_RATE * 12 * hop_length / sr)
    states = _viterbi(observation, _band(n_bins, per_frame * bins_per_semitone + 1))
    freqs = fmin * 2 ** (np.arange(n_bins) / (12 * bins_per_semitone))
    f0 = freqs[states % n_bins]
    voiced = states < n_bins
    f0[~voiced] = np.nan
    return f0, voiced, voiced_prob
