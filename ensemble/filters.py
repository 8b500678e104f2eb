"""Filters in numpy alone, for the perform path.

scipy.signal and scipy.ndimage cost 0.5-1.2 s of imports on every CLI call for a handful of
filters; these are the same filters (tests/test_filters.py compares them with scipy's):

- `moving_average` and `sliding_minimum`: scipy.ndimage's uniform_filter1d and minimum_filter1d
  with mode="nearest", by cumulative sums and by van Herk/Gil-Werman block minima (O(N));
- `butter_lowpass2`, `biquad_response` and `causal_filter`: IIR biquads run from a zero state
  (scipy.signal's lfilter/sosfilt), applied as their impulse response by FFT, block by block.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

Biquad = tuple[np.ndarray, np.ndarray]  # (b (3,), a (3,)), a[0] = 1
# Where an impulse response is cut: the tail left is under this times its input's scale, far
# under float32's resolution, so the FFT result equals lfilter's to rounding.
RESPONSE_TOLERANCE = 1e-17
FILTER_FFT = 1 << 15  # the shortest FFT of `filter_blocks`


def fast_length(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n, a fast FFT length (scipy.fft.next_fast_len for real input)."""
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            best = min(best, p35 << max(0, (n - 1) // p35).bit_length())
            p35 *= 3
        p5 *= 5
    return best


def _edge_padded(x: np.ndarray, size: int) -> np.ndarray:
    """``x`` with its first value repeated size // 2 times before it and its last after it, so
    the window of output i is padded[i : i + size] (scipy.ndimage's centring, mode="nearest")."""
    left = size // 2
    return np.concatenate([np.repeat(x[:1], left), x, np.repeat(x[-1:], size - 1 - left)])


def moving_average(x: np.ndarray, size: int) -> np.ndarray:
    """(N,) mean over ``size`` samples centred as scipy.ndimage.uniform_filter1d(x, size,
    mode="nearest") centres them; computed in float64, returned in x's dtype."""
    x = np.asarray(x)
    if len(x) == 0:
        return x.copy()
    sums = np.concatenate([[0.0], np.cumsum(_edge_padded(x, size), dtype=np.float64)])
    return ((sums[size:] - sums[:-size]) / size).astype(x.dtype)


def sliding_minimum(x: np.ndarray, size: int) -> np.ndarray:
    """(N,) minimum over ``size`` samples, equal to scipy.ndimage.minimum_filter1d(x, size,
    mode="nearest"): van Herk/Gil-Werman, a prefix and a suffix minimum per block of ``size``,
    so the cost does not grow with the window."""
    x = np.asarray(x)
    n = len(x)
    if n == 0 or size <= 1:
        return x.copy()
    padded = _edge_padded(x, size)
    blocks = -(-len(padded) // size)
    filler = np.inf if np.issubdtype(x.dtype, np.floating) else np.iinfo(x.dtype).max
    tiled = np.full(blocks * size, filler, x.dtype)
    tiled[: len(padded)] = padded
    tiled = tiled.reshape(blocks, size)
    prefix = np.minimum.accumulate(tiled, axis=1).ravel()
    suffix = np.minimum.accumulate(tiled[:, ::-1], axis=1)[:, ::-1].ravel()
    # window i = padded[i : i + size]: the suffix of i's block and the prefix to its end
    return np.minimum(suffix[:n], prefix[size - 1 : size - 1 + n])


def butter_lowpass2(cutoff_hz: float, sample_rate: float) -> Biquad:
    """Second-order Butterworth low-pass by the bilinear transform with a pre-warped cutoff:
    scipy.signal.butter(2, cutoff_hz, fs=sample_rate)'s coefficients."""
    k = np.tan(np.pi * cutoff_hz / sample_rate)
    norm = 1.0 / (1.0 + np.sqrt(2.0) * k + k * k)
    b0 = k * k * norm
    b = np.array([b0, 2.0 * b0, b0])
    a = np.array([1.0, 2.0 * (k * k - 1.0) * norm, (1.0 - np.sqrt(2.0) * k + k * k) * norm])
    return b, a


def biquad_response(sections: Sequence[Biquad]) -> np.ndarray:
    """(L,) impulse response of ``sections`` in series, from a zero state, cut where the rest
    is under RESPONSE_TOLERANCE (at most a double pole of radius r: it falls as n r^n).

    Sampled from the exact frequency response on a grid long enough that aliasing is as small
    as the cut, so it equals the recursion's impulse response to rounding."""
    radius = max(float(np.abs(np.roots(a)).max(initial=0.0)) for _, a in sections)
    length = 8 if radius < 1e-3 else 2 * int(np.ceil(np.log(RESPONSE_TOLERANCE) / np.log(radius)))
    n_fft = 1 << (4 * length - 1).bit_length()
    z = np.exp(-2j * np.pi * np.arange(n_fft // 2 + 1) / n_fft)  # z^-1 on the unit circle
    spectrum = np.ones_like(z)
    for b, a in sections:
        spectrum *= np.polyval(np.asarray(b)[::-1], z) / np.polyval(np.asarray(a)[::-1], z)
    return np.fft.irfft(spectrum, n_fft)[:length]


def filter_blocks(x: np.ndarray, response: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(start, outputs) blocks of ``x`` (N,) convolved with ``response`` (L,) and cut to N
    samples, in order: a causal filter from a zero state, by FFT overlap-add (each output is
    final when yielded). float64.

    Each FFT is a power of two at least 4 L (and FILTER_FFT): most of it is new input, and
    the scratch stays a few MB however long ``x`` is."""
    n, taps = len(x), len(response)
    n_fft = max(FILTER_FFT, 1 << (4 * taps - 1).bit_length())
    block = n_fft - taps + 1
    kernel = np.fft.rfft(response, n_fft)
    carry = np.zeros(taps - 1)
    for start in range(0, n, block):
        piece = np.asarray(x[start : start + block], np.float64)
        out = np.fft.irfft(np.fft.rfft(piece, n_fft) * kernel, n_fft)[: len(piece) + taps - 1]
        out[: taps - 1] += carry  # the tails of the blocks before
        carry = out[len(piece) :].copy()
        yield start, out[: len(piece)]


def causal_filter(x: np.ndarray, response: np.ndarray) -> np.ndarray:
    """(N,) or (N, C) ``x`` filtered along axis 0 by ``response`` (see `filter_blocks`):
    scipy.signal.lfilter/sosfilt of the filter ``response`` samples, to rounding. float64."""
    x = np.asarray(x)
    out = np.empty(x.shape, np.float64)
    columns = x.reshape(len(x), -1)
    for c, column in enumerate(out.reshape(len(x), -1).T):
        for start, block in filter_blocks(columns[:, c], response):
            column[start : start + len(block)] = block
    return out
