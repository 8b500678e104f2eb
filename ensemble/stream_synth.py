"""The synths of `ensemble.dsp` continued across a stream's pushes, in numpy (float32 audio).

Each takes the controls of the frames just decoded ((F, ...) arrays) and adds its audio to an
`OverlapAdd` at absolute sample positions, as the offline synth would place it; ``ready`` is
the sample up to which nothing more will be added. Per frame the arrays are small, so numpy's
~1 µs per op beats torch's ~10 µs (see `ensemble.np_layers`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from ensemble import dsp

Controls = dict[str, np.ndarray]


class OverlapAdd:
    """Running sum of contributions at absolute sample positions in one reused buffer; `take`
    hands samples out."""

    def __init__(self) -> None:
        self._buffer = np.zeros(1 << 16, np.float32)
        self._start = 0  # absolute index of _buffer[0]
        self._used = 0  # samples of _buffer holding contributions (or taken-over zeros)

    def add(self, position: int, samples: np.ndarray) -> None:
        """Add (n,) samples from absolute ``position``; any before the last `take` are cut, as
        the offline render crops what falls before sample 0."""
        if position < self._start:
            samples, position = samples[self._start - position :], self._start
        begin = position - self._start
        self._reserve(begin + samples.shape[0])
        self._buffer[begin : begin + samples.shape[0]] += samples

    def take(self, stop: int) -> np.ndarray:
        """(stop - previous stop,) samples up to absolute ``stop`` (zeros where none added)."""
        n = stop - self._start
        self._reserve(n)
        out = self._buffer[:n].copy()
        rest = self._used - n
        self._buffer[:rest] = self._buffer[n : self._used]  # the shift is ≤ a one-shot long
        self._buffer[rest : self._used] = 0.0
        self._start, self._used = stop, rest
        return out

    def _reserve(self, n: int) -> None:
        if n > self._buffer.shape[0]:
            self._buffer = np.concatenate([self._buffer, np.zeros(n, np.float32)])
        self._used = max(self._used, n)


class Interpolated:
    """A synth whose interval t interpolates frames t and t + 1 (harmonics, fixed sinusoids):
    interval t is rendered when frame t + 1 arrives, the last one at the end with its frame held.

    ``render(frames, first_frame, n)`` → (n · hop,) audio of the n intervals between the n + 1
    frames (controls (n + 1, ...)).
    """

    def __init__(self, render: Callable[[Controls, int, int], np.ndarray], hop: int) -> None:
        self._render, self._hop = render, hop
        self._last: Controls | None = None
        self.frames = 0  # intervals rendered

    def push(self, ctrl: Controls, out: OverlapAdd) -> None:
        if self._last is not None:
            ctrl = {k: np.concatenate([self._last[k], v]) for k, v in ctrl.items()}
        n = next(iter(ctrl.values())).shape[0] - 1
        if n > 0:
            out.add(self.frames * self._hop, self._render(ctrl, self.frames, n))
            self.frames += n
        if n >= 0:
            self._last = {k: v[-1:] for k, v in ctrl.items()}

    def finish(self, out: OverlapAdd) -> None:
        if self._last is not None:
            held = {k: np.concatenate([v, v]) for k, v in self._last.items()}
            out.add(self.frames * self._hop, self._render(held, self.frames, 1))
            self.frames += 1

    @property
    def ready(self) -> int:
        return self.frames * self._hop


def interpolate_bank(pair: np.ndarray, bank: np.ndarray) -> np.ndarray:
    """`dsp._interpolated_sum` over given pairs: (n, 2, K) amplitudes of frames t and t + 1 and
    an (n, K, hop) oscillator bank → (n · hop,)."""
    hop = bank.shape[-1]
    mixed = pair @ bank  # (n, 2, hop)
    w = np.arange(hop, dtype=np.float32) / np.float32(hop)
    return (mixed[:, 0] * (1.0 - w) + mixed[:, 1] * w).reshape(-1)


class Harmonics:
    """`dsp.harmonic_synth` interval by interval (controls ``f0`` (n + 1,), ``amplitudes``
    (n + 1, K)); carries the fundamental's phase in float64 cycles, as the offline render
    accumulates it."""

    def __init__(self, n_harmonics: int, hop: int, sample_rate: int) -> None:
        self._hop, self._sr = hop, sample_rate
        self._k = np.arange(1, n_harmonics + 1, dtype=np.float32)
        self._w = np.arange(hop, dtype=np.float64) / hop
        self._cycles = 0.0

    def __call__(self, ctrl: Controls, first_frame: int, n: int) -> np.ndarray:
        del first_frame
        f0 = ctrl["f0"].astype(np.float64)
        up = (f0[:n, None] * (1.0 - self._w) + f0[1:, None] * self._w).reshape(-1) / self._sr
        cycles = self._cycles + np.cumsum(up) - up  # the phase at each sample's start
        self._cycles = math.fmod(self._cycles + float(up.sum()), 1.0)
        phase = (2.0 * math.pi * np.mod(cycles, 1.0)).astype(np.float32)
        bank = np.sin(phase.reshape(n, 1, self._hop) * self._k[:, None])  # (n, K, hop)
        top = np.maximum(ctrl["f0"][:n], ctrl["f0"][1:])
        keep = (top[:, None] * self._k < self._sr / 2.0).astype(np.float32)[:, None]
        amps = ctrl["amplitudes"]
        return interpolate_bank(np.stack([amps[:n], amps[1:]], axis=1) * keep, bank)


def sinusoids(
    frequencies_hz: np.ndarray, hop: int, sample_rate: int
) -> Callable[[Controls, int, int], np.ndarray]:
    """`dsp.sinusoid_synth` of fixed partials as an `Interpolated` render (controls ``tonal``
    (n + 1, K)); phases are absolute, from the first frame's sample index."""
    rates = frequencies_hz.astype(np.float64)[:, None] / sample_rate
    within = 2.0 * math.pi * np.mod(rates * np.arange(hop), 1.0)  # (K, hop)
    sin_within, cos_within = np.sin(within)[:, None], np.cos(within)[:, None]

    def render(ctrl: Controls, first_frame: int, n: int) -> np.ndarray:
        # sin(start + within) by the angle sum: 2 sines per interval instead of one per sample
        index = np.arange(first_frame, first_frame + n, dtype=np.float64) * hop
        start = 2.0 * math.pi * np.mod(rates * index, 1.0)  # (K, n)
        bank = np.sin(start)[..., None] * cos_within + np.cos(start)[..., None] * sin_within
        bank = bank.astype(np.float32).transpose(1, 0, 2)  # (n, K, hop)
        amps = ctrl["tonal"]
        return interpolate_bank(np.stack([amps[:n], amps[1:]], axis=1), bank)

    return render


class Noise:
    """`dsp.filtered_noise` block by block: block t starts `dsp.noise_offset` samples before
    frame t's centre; the end adds the offline render's extra block (the last frame held). The
    noise comes from the same torch generator, drawn in the same order, as the render's."""

    _POOL = 100  # noise blocks drawn per torch call (one call costs ~50 µs, one block or 100)

    def __init__(self, hop: int, n_bands: int, generator: torch.Generator) -> None:
        self._hop, self._gen = hop, generator
        self._offset = dsp.noise_offset(hop, n_bands)
        size = 2 * (n_bands - 1)
        self._window = torch.hann_window(size, periodic=False).numpy()
        # dsp.noise_filter_ir centres the filter by rolling it half its length; in frequency
        # that is a sign flip of every odd band, done before the inverse FFT.
        self._centre = (-1.0) ** np.arange(n_bands)
        self._n_fft = dsp._fast_fft_size(hop + size)
        self._pool = np.zeros((0, hop), np.float32)
        self._last: np.ndarray | None = None
        self.frames = 0

    def _draw(self, n: int) -> np.ndarray:
        """(n, hop) the generator's next noise blocks; drawing many at once gives the same
        numbers as drawing them one by one, as the offline render draws all at once."""
        if n > self._pool.shape[0]:
            more = max(n - self._pool.shape[0], self._POOL)
            fresh = dsp.uniform_noise(1, more, self._hop, self._gen, torch.device("cpu"))
            self._pool = np.concatenate([self._pool, fresh[0].numpy()])
        noise, self._pool = self._pool[:n], self._pool[n:]
        return noise

    def push(self, magnitudes: np.ndarray, out: OverlapAdd) -> None:
        """(F, M) band magnitudes of the next frames."""
        n = magnitudes.shape[0]
        if n == 0:
            return
        noise = self._draw(n)
        ir = np.fft.irfft((magnitudes * self._centre).astype(np.complex64), axis=-1)
        ir *= self._window
        spec = np.fft.rfft(noise, self._n_fft) * np.fft.rfft(ir, self._n_fft)
        blocks = np.fft.irfft(spec, self._n_fft)[:, : self._hop + ir.shape[-1]]
        for i, block in enumerate(blocks):
            out.add((self.frames + i) * self._hop - self._offset, block)
        self.frames += n
        self._last = magnitudes[-1:]

    def finish(self, out: OverlapAdd) -> None:
        if self._last is not None:
            self.push(self._last, out)

    @property
    def ready(self) -> int:
        return self.frames * self._hop - self._offset


class OneShots:
    """`dsp.one_shot_synth` frame by frame: frame t's strikes sound from t·hop - hop/2 on."""

    def __init__(self, kit: np.ndarray, hop: int, per_frame: int) -> None:
        self._kit, self._hop, self._per_frame = kit, hop, per_frame  # kit (K, L)
        self._step = hop // per_frame
        self.frames = 0

    def push(self, strikes: np.ndarray, out: OverlapAdd) -> None:
        """(F · strikes_per_frame, K) strike amplitudes of the next frames."""
        start = self.frames * self._hop - self._hop // 2
        for i, audio in enumerate(strikes @ self._kit):
            out.add(start + i * self._step, audio)
        self.frames += strikes.shape[0] // self._per_frame

    @property
    def ready(self) -> int:
        return self.frames * self._hop - self._hop // 2
