"""Streaming render: control frames in, audio blocks out, the audio of `Instrument.render`.

A `RenderStream` carries across blocks everything the offline render sees over the whole clip:
the pitched decoder's GRU state, the drum decoder's conv context (`ensemble.drum_stream`), the
previous control frame (audio between frame centres t·hop and (t+1)·hop interpolates both, so
it waits for frame t + 1), the oscillator phase, the sample index of the drums' fixed
sinusoids, and the overlap-add tails of the filtered-noise blocks, the one-shots and the reverb.
Noise blocks are drawn in frame order from a generator seeded like `render(seed=...)`, so both
shape the same noise. Everything is in the decoder's `config.sample_rate` and `hop_length`.

Where the stream cannot see what the offline render sees (the lead-in before the first voiced
frame; clips over 3.5 s, whose GRU the offline render runs in warmed-up segments; the drums'
whole-clip GroupNorm) see `Instrument.stream`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from ensemble import dsp
from ensemble.drum_stream import DrumControlStream
from ensemble.errors import EnsembleError
from ensemble.instrument import (
    DrumDecoder,
    Instrument,
    InstrumentConfig,
    PitchedDecoder,
    fill_unvoiced_f0,
)
from ensemble.limits import Range
from ensemble.threads import one_torch_thread

BLOCK_SIZE = Range("block_size", 16, 16384)
Controls = dict[str, torch.Tensor]


class OverlapAdd:
    """Running sum of contributions at absolute sample positions; `take` hands samples out."""

    def __init__(self) -> None:
        self._buffer = torch.zeros(0)
        self._start = 0  # absolute index of _buffer[0]

    def add(self, position: int, samples: torch.Tensor) -> None:
        """Add (n,) samples from absolute ``position``; any before sample 0 are cut, as the
        offline render crops them."""
        if position < self._start:
            samples, position = samples[self._start - position :], self._start
        begin = position - self._start
        end = begin + samples.shape[0]
        if end > self._buffer.shape[0]:
            self._buffer = torch.nn.functional.pad(self._buffer, (0, end - self._buffer.shape[0]))
        self._buffer[begin:end] += samples

    def take(self, stop: int) -> torch.Tensor:
        """Samples from the previous `take` up to absolute ``stop`` (zeros where none added)."""
        n = stop - self._start
        if n > self._buffer.shape[0]:
            self._buffer = torch.nn.functional.pad(self._buffer, (0, n - self._buffer.shape[0]))
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        self._start = stop
        return out


class _Interpolated:
    """A synth whose interval t interpolates frames t and t + 1 (harmonics, fixed sinusoids):
    interval t is rendered when frame t + 1 arrives, the last one at the end with its frame held.

    ``render(frames, first_frame, n)`` → (n · hop,) audio of the first n intervals of frames.
    """

    def __init__(self, render: Callable[[Controls, int, int], torch.Tensor], hop: int) -> None:
        self._render, self._hop = render, hop
        self._last: Controls | None = None
        self.frames = 0  # intervals rendered

    def push(self, ctrl: Controls, out: OverlapAdd) -> None:
        if self._last is not None:
            ctrl = {k: torch.cat([self._last[k], v], dim=1) for k, v in ctrl.items()}
        n = next(iter(ctrl.values())).shape[1] - 1
        if n > 0:
            out.add(self.frames * self._hop, self._render(ctrl, self.frames, n))
            self.frames += n
        if n >= 0:
            self._last = {k: v[:, -1:] for k, v in ctrl.items()}

    def finish(self, out: OverlapAdd) -> None:
        if self._last is not None:
            out.add(self.frames * self._hop, self._render(self._last, self.frames, 1))
            self.frames += 1

    @property
    def ready(self) -> int:
        return self.frames * self._hop


class _Harmonics:
    """`dsp.harmonic_synth` continued across calls: carries the fundamental's phase (cycles,
    float64, as the offline render accumulates it)."""

    def __init__(self, hop: int, sample_rate: int) -> None:
        self._hop, self._sr = hop, sample_rate
        self._cycles = torch.zeros(1, dtype=torch.float64)

    def __call__(self, ctrl: Controls, first_frame: int, n: int) -> torch.Tensor:
        del first_frame
        f0 = ctrl["f0"]
        phase = 2.0 * math.pi * torch.frac(self._cycles)
        audio = dsp.harmonic_synth(f0, ctrl["amplitudes"], self._hop, self._sr, phase)
        up = dsp.upsample_frames(f0.double(), self._hop)[:, : n * self._hop]
        self._cycles = self._cycles + up.sum(dim=1) / self._sr
        return audio[0, : n * self._hop]


class _Noise:
    """`dsp.filtered_noise` block by block: block t starts `dsp.noise_offset` samples before
    frame t's centre; the end adds the offline render's extra block (the last frame held)."""

    def __init__(self, config: InstrumentConfig, generator: torch.Generator) -> None:
        self._hop, self._gen = config.hop_length, generator
        self._offset = dsp.noise_offset(config.hop_length, config.n_noise_bands)
        self._last: torch.Tensor | None = None
        self.frames = 0

    def push(self, magnitudes: torch.Tensor, out: OverlapAdd) -> None:
        """(1, F, M) band magnitudes of the next frames."""
        n = magnitudes.shape[1]
        if n == 0:
            return
        noise = dsp.uniform_noise(1, n, self._hop, self._gen, magnitudes.device)
        blocks = dsp.filter_noise_blocks(magnitudes, noise)  # (1, F, hop + L)
        size = blocks.shape[-1]
        length = (n - 1) * self._hop + size
        ola = torch.nn.functional.fold(
            blocks.transpose(1, 2), (1, length), kernel_size=(1, size), stride=(1, self._hop)
        )
        out.add(self.frames * self._hop - self._offset, ola.view(length))
        self.frames += n
        self._last = magnitudes[:, -1:]

    def finish(self, out: OverlapAdd) -> None:
        if self._last is not None:
            self.push(self._last, out)

    @property
    def ready(self) -> int:
        return self.frames * self._hop - self._offset


class _OneShots:
    """`dsp.one_shot_synth` frame by frame: frame t's strikes sound from t·hop - hop/2 on."""

    def __init__(self, model: DrumDecoder) -> None:
        self._hop = model.config.hop_length
        self._step = self._hop // model.config.strikes_per_frame
        self._kit = (model.shots * model.fade).detach().unsqueeze(1)  # (K, 1, L)
        self.frames = 0

    def push(self, strikes: torch.Tensor, out: OverlapAdd) -> None:
        """(1, F · strikes_per_frame, K) strike amplitudes of the next frames."""
        if strikes.shape[1] == 0:
            return
        audio = torch.nn.functional.conv_transpose1d(
            strikes.transpose(1, 2), self._kit, stride=self._step
        )
        out.add(self.frames * self._hop - self._hop // 2, audio.view(-1))
        self.frames += strikes.shape[1] * self._step // self._hop

    @property
    def ready(self) -> int:
        return self.frames * self._hop - self._hop // 2


class _Reverb:
    """`dsp.Reverb` by overlap-add: each final stretch of dry audio adds itself and its wet
    tail (FFT convolution with the room's impulse response)."""

    def __init__(self, reverb: dsp.Reverb) -> None:
        self._ir = reverb.impulse_response().detach()
        self._spectra: dict[int, torch.Tensor] = {}  # IR spectrum per FFT size

    def push(self, position: int, dry: torch.Tensor, out: OverlapAdd) -> None:
        n = dry.shape[0]
        if n == 0:
            return
        n_fft = dsp._fast_fft_size(n + self._ir.shape[0] - 1)
        if n_fft not in self._spectra:
            self._spectra[n_fft] = torch.fft.rfft(self._ir, n_fft)
        wet = torch.fft.irfft(torch.fft.rfft(dry, n_fft) * self._spectra[n_fft], n_fft)
        out.add(position, dry)
        out.add(position, wet[: n + self._ir.shape[0] - 1])


class _PitchedVoice:
    """GRU controls frame by frame (state carried) into harmonics + filtered noise."""

    def __init__(self, model: PitchedDecoder, generator: torch.Generator) -> None:
        cfg = model.config
        self._model = model
        self._state: torch.Tensor | None = None
        # Unvoiced frames hold the last voiced pitch; before the first one the stream cannot
        # look ahead to it (the offline render does), so they hold A3 (220 Hz).
        self._last_voiced = 220.0
        self._harmonics = _Interpolated(_Harmonics(cfg.hop_length, cfg.sample_rate), cfg.hop_length)
        self._noise = _Noise(cfg, generator)

    def push(self, f0_hz: np.ndarray, loudness_db: torch.Tensor, dry: OverlapAdd) -> None:
        filled = fill_unvoiced_f0(np.concatenate([[self._last_voiced], f0_hz]))[1:]
        voiced = f0_hz[np.isfinite(f0_hz) & (f0_hz > 0)]
        if voiced.size:
            self._last_voiced = float(voiced[-1])
        f0 = torch.from_numpy(filled).unsqueeze(0)
        ctrl, self._state = self._model.step(f0, loudness_db, self._state)
        self._harmonics.push({"f0": f0, "amplitudes": ctrl["amplitudes"]}, dry)
        self._noise.push(ctrl["noise"], dry)

    def finish(self, dry: OverlapAdd) -> None:
        self._harmonics.finish(dry)
        self._noise.finish(dry)

    @property
    def ready(self) -> int:
        return min(self._harmonics.ready, self._noise.ready)


class _DrumVoice:
    """Conv controls (`DrumControlStream`) into filtered noise + fixed sinusoids + one-shots."""

    def __init__(
        self, model: DrumDecoder, generator: torch.Generator, reference: torch.Tensor | None
    ) -> None:
        self._model = model
        self._net = DrumControlStream(model, reference)
        self._tonal = _Interpolated(self._render_tonal, model.config.hop_length)
        self._noise = _Noise(model.config, generator)
        self._shots = _OneShots(model)

    def _render_tonal(self, ctrl: Controls, first_frame: int, n: int) -> torch.Tensor:
        cfg = self._model.config
        hop, start = cfg.hop_length, first_frame * cfg.hop_length
        audio = dsp.sinusoid_synth(self._model.tonal_hz, ctrl["tonal"], hop, cfg.sample_rate, start)
        return audio[0, : n * hop]

    def _synth(self, ctrl: Controls | None, dry: OverlapAdd) -> None:
        if ctrl is None:
            return
        self._tonal.push({"tonal": ctrl["tonal"]}, dry)
        self._noise.push(ctrl["noise"], dry)
        self._shots.push(ctrl["strikes"], dry)

    def push(self, f0_hz: np.ndarray | None, loudness_db: torch.Tensor, dry: OverlapAdd) -> None:
        del f0_hz
        self._synth(self._net.push(loudness_db), dry)

    def finish(self, dry: OverlapAdd) -> None:
        self._synth(self._net.finish(), dry)
        self._tonal.finish(dry)
        self._noise.finish(dry)

    @property
    def ready(self) -> int:
        return min(self._tonal.ready, self._noise.ready, self._shots.ready)


def lookahead_frames(config: InstrumentConfig) -> int:
    """Control frames the controls network waits for: the drums' centred convs, Σ of each
    layer's right half-kernel; 0 for the pitched decoder (its GRU is causal)."""
    if config.kind != "drums":
        return 0
    span = config.conv_kernel - 1
    return sum(d * span - d * span // 2 for d in config.conv_dilations)


def stream_latency(config: InstrumentConfig, block_size: int) -> int:
    """Worst delay in samples between the time a block should start playing and the arrival of
    the last control frame it needs, control frame t arriving at its centre t · hop.

    Final audio lags the frames by the synth's look-ahead (interpolation reads frame t + 1; a
    noise block starts `dsp.noise_offset` samples early; a drum frame's strikes half a hop early)
    plus the controls network's (`lookahead_frames`); a block waits for its last sample.
    """
    hop = config.hop_length
    early = [hop, dsp.noise_offset(hop, config.n_noise_bands)]
    if config.kind == "drums":
        early.append(hop // 2)
    delay = lookahead_frames(config)

    def frames_needed(end: int) -> int:  # frames (counted from 0) that make samples < end final
        return max(-(-(end + e) // hop) for e in early) + delay

    period = math.lcm(block_size, hop) // block_size
    return max(
        (frames_needed((i + 1) * block_size) - 1) * hop - i * block_size for i in range(period)
    )


class RenderStream:
    """A streaming render session (`Instrument.stream`): `push` control frames as they come,
    get whole audio blocks back; `finish` at the end. The blocks concatenated are the offline
    render of all the frames pushed (padded to a whole block).

    Attributes:
        block_size: samples per block.
        latency: `stream_latency` of this decoder and block size, in samples.
    """

    def __init__(
        self,
        instrument: Instrument,
        block_size: int,
        *,
        seed: int = 0,
        reference_loudness: np.ndarray | None = None,
    ) -> None:
        if isinstance(block_size, bool) or not isinstance(block_size, int):  # 256.0 is a mistake
            raise EnsembleError(f"block_size must be a whole number of samples, not {block_size!r}")
        self.block_size = int(BLOCK_SIZE.check(block_size))
        self.instrument = instrument
        self.config = instrument.config
        model = instrument.model
        generator = torch.Generator().manual_seed(seed)
        if isinstance(model, DrumDecoder):
            ref = None if reference_loudness is None else self._loudness(reference_loudness)
            self._voice: _PitchedVoice | _DrumVoice = _DrumVoice(model, generator, ref)
        elif reference_loudness is not None:
            raise EnsembleError("reference_loudness is for drum decoders; a GRU needs none.")
        else:
            self._voice = _PitchedVoice(model, generator)
        self._reverb = _Reverb(model.reverb)
        self._dry, self._out = OverlapAdd(), OverlapAdd()
        self._pending = torch.zeros(0)  # final samples not yet in a whole block
        self._done = 0  # samples final
        self.frames = 0
        self._finished = False
        self.latency = stream_latency(self.config, self.block_size)

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.latency / self.config.sample_rate

    def _loudness(self, loudness_db: np.ndarray) -> torch.Tensor:
        loud = np.asarray(loudness_db, np.float32)
        if loud.ndim != 1:
            raise EnsembleError(f"loudness_db must be one value per frame (F,), not {loud.shape}.")
        return torch.from_numpy(loud).unsqueeze(0)

    @torch.inference_mode()
    def push(self, f0_hz: np.ndarray | None, loudness_db: np.ndarray) -> np.ndarray:
        """(F,) f0 in Hz (None for drums; unvoiced ≤ 0 held) and (F,) loudness in dB of the next
        frames → (n, block_size) float32 blocks now complete (n may be 0)."""
        if self._finished:
            raise EnsembleError("This stream has finished; start another with Instrument.stream.")
        loud = self._loudness(loudness_db)
        f0 = None
        if self.instrument.kind == "pitched":
            if f0_hz is None:
                raise EnsembleError(f"The pitched instrument {self.instrument.name!r} needs f0.")
            f0 = np.asarray(f0_hz, np.float32)
            if f0.shape != (loud.shape[1],):
                raise EnsembleError(f"f0_hz {f0.shape} and loudness_db {loud.shape[1:]} differ.")
        if loud.shape[1] == 0:  # a block that no frame centre falls in
            return self._emit(self._done)
        with one_torch_thread():
            self._voice.push(f0, loud, self._dry)
            self.frames += loud.shape[1]
            return self._emit(self._voice.ready)

    @torch.inference_mode()
    def finish(self) -> np.ndarray:
        """The remaining blocks, up to the render's frames · hop samples, the last zero-padded."""
        if self._finished:
            return np.zeros((0, self.block_size), np.float32)
        self._finished = True
        with one_torch_thread():
            self._voice.finish(self._dry)
            blocks = self._emit(self.frames * self.config.hop_length)
        tail = self._pending.numpy()
        if tail.size == 0:
            return blocks
        last = np.zeros((1, self.block_size), np.float32)
        last[0, : tail.size] = tail
        return np.concatenate([blocks, last])

    def _emit(self, ready: int) -> np.ndarray:
        if ready > self._done:
            self._reverb.push(self._done, self._dry.take(ready), self._out)
            self._pending = torch.cat([self._pending, self._out.take(ready)])
            self._done = ready
        n = self._pending.shape[0] // self.block_size
        blocks = self._pending[: n * self.block_size].reshape(n, self.block_size)
        self._pending = self._pending[n * self.block_size :]
        return blocks.numpy().astype(np.float32, copy=True)
