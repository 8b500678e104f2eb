"""Streaming render: control frames in, audio blocks out, the audio of `Instrument.render`.

A `RenderStream` carries across blocks everything the offline render sees over the whole clip:
the pitched decoder's GRU state, the drum decoder's conv context (`ensemble.drum_stream`), the
previous control frame (audio between frame centres t·hop and (t+1)·hop interpolates both, so
it waits for frame t + 1), the oscillator phase, the sample index of the drums' fixed
sinusoids, and the overlap-add tails of the filtered-noise blocks, the one-shots and the reverb.
Noise blocks are drawn in frame order from a generator seeded like `render(seed=...)`, so both
shape the same noise. Everything is in the decoder's `config.sample_rate` and `hop_length`.

A push costs about one frame's worth of work (~0.5 ms at 44.1 kHz on the 2-core CPU: 10-18x
real time under load 4-7): the networks and synths run in numpy (`ensemble.np_layers`,
`ensemble.stream_synth`), where torch's per-op overhead outweighed a frame's arithmetic, and the
reverb is a partitioned convolution (`ensemble.partitioned`), not a room-long FFT per push.

Where the stream cannot see what the offline render sees (the lead-in before the first voiced
frame; clips over 3.5 s, whose GRU the offline render runs in warmed-up segments; the drums'
whole-clip GroupNorm) see `Instrument.stream`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ensemble import dsp, np_layers
from ensemble.drum_stream import DrumControlStream
from ensemble.errors import EnsembleError
from ensemble.instrument import (
    MIDI_RANGE,
    DrumDecoder,
    Instrument,
    InstrumentConfig,
    PitchedDecoder,
    fill_unvoiced_f0,
)
from ensemble.limits import Range
from ensemble.partitioned import PartitionedConvolution
from ensemble.stream_synth import (
    Controls,
    Harmonics,
    Interpolated,
    Noise,
    OneShots,
    OverlapAdd,
    sinusoids,
)
from ensemble.threads import one_torch_thread

BLOCK_SIZE = Range("block_size", 16, 16384)
# Reverb partition: the head is convolved directly, so it adds no latency whatever its size;
# 512 costs least per sample with the 0.5 s rooms (measured: 90 µs per 441-sample frame at
# 44.1 kHz against 112 µs at 256, 83 µs at 1024).
REVERB_PARTITION = 512


class _PitchedControls:
    """`PitchedDecoder.step` in numpy (`ensemble.np_layers`): (F,) filled f0 in Hz and (F,)
    loudness in dB → ``amplitudes`` (F, K) and ``noise`` (F, M), the GRU state carried."""

    def __init__(self, model: PitchedDecoder) -> None:
        cfg = self.config = model.config
        self._f0_mlp, self._loud_mlp = (np_layers.sequential(m)
                                        for m in (model.f0_mlp, model.loudness_mlp))  # fmt: skip
        self._gru = np_layers.GRU(model.gru)
        self._out = np_layers.sequential(model.out_mlp)
        self._head = np_layers.dense(model.head)
        self._k = np.arange(1, cfg.n_harmonics + 1, dtype=np.float32)
        # `dsp.band_gain`'s learned gain on the harmonics above band_split_hz (0 dB: none)
        self._high_db = float(model.high_band_db.detach()) if cfg.band_split_hz > 0 else 0.0

    def __call__(self, f0_hz: np.ndarray, loudness_db: np.ndarray) -> Controls:
        low, high = self.config.loudness_range_db
        loud = np.clip((loudness_db - np.float32(low)) / np.float32(high - low), 0.0, 1.0)
        midi = 69.0 + 12.0 * np.log2(np.maximum(f0_hz, np.float32(1e-6)) / np.float32(440.0))
        pitch = np.clip(np.where(f0_hz > 0, midi, 0.0), *MIDI_RANGE) / np.float32(127.0)
        inputs = np.concatenate([self._f0_mlp(pitch[:, None]), self._loud_mlp(loud[:, None])], 1)
        hidden = self._gru(inputs)
        raw = self._head(self._out(np.concatenate([hidden, inputs], 1)))
        k = self.config.n_harmonics
        amplitude = np_layers.exp_sigmoid(raw[:, :1])
        below = f0_hz[:, None] * self._k < self.config.sample_rate / 2.0  # dsp.nyquist_mask
        distribution = np_layers.exp_sigmoid(raw[:, 1 : 1 + k]) * below
        if self._high_db:
            distribution *= self._band_gain(f0_hz)
        total = np.maximum(distribution.sum(axis=1, keepdims=True), np.float32(1e-7))
        return {
            "amplitudes": amplitude * (distribution / total),
            "noise": np_layers.exp_sigmoid(raw[:, 1 + k :]),
        }


    def _band_gain(self, f0_hz: np.ndarray) -> np.ndarray:
        """(F, K) `dsp.band_gain` in numpy."""
        ratio = np.maximum(f0_hz, np.float32(1.0))[:, None] * self._k / self.config.band_split_hz
        above = np.clip((np.log2(ratio) + np.float32(1 / 12)) * 6.0, 0.0, 1.0)
        return np.power(np.float32(10.0), self._high_db * above / 20.0).astype(np.float32)


class _PitchedVoice:
    """GRU controls frame by frame (state carried) into harmonics + filtered noise."""

    def __init__(self, model: PitchedDecoder, generator: torch.Generator) -> None:
        cfg = model.config
        self._controls = _PitchedControls(model)
        # Unvoiced frames hold the last voiced pitch; before the first one the stream cannot
        # look ahead to it (the offline render does), so they hold A3 (220 Hz).
        self._last_voiced = 220.0
        harmonics = Harmonics(cfg.n_harmonics, cfg.hop_length, cfg.sample_rate)
        self._harmonics = Interpolated(harmonics, cfg.hop_length)
        self._noise = Noise(cfg.hop_length, cfg.n_noise_bands, generator)

    def push(self, f0_hz: np.ndarray, loudness_db: np.ndarray, dry: OverlapAdd) -> None:
        filled = fill_unvoiced_f0(np.concatenate([[self._last_voiced], f0_hz]))[1:]
        voiced = f0_hz[np.isfinite(f0_hz) & (f0_hz > 0)]
        if voiced.size:
            self._last_voiced = float(voiced[-1])
        ctrl = self._controls(filled, loudness_db)
        self._harmonics.push({"f0": filled, "amplitudes": ctrl["amplitudes"]}, dry)
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
        cfg = model.config
        self._net = DrumControlStream(model, reference)
        tonal_hz = model.tonal_hz.numpy()
        self._tonal = Interpolated(sinusoids(tonal_hz, cfg.hop_length, cfg.sample_rate),
                                   cfg.hop_length)  # fmt: skip
        self._noise = Noise(cfg.hop_length, cfg.n_noise_bands, generator)
        kit = (model.shots * model.fade).detach().numpy()
        self._shots = OneShots(kit, cfg.hop_length, cfg.strikes_per_frame)

    def _synth(self, ctrl: Controls | None, dry: OverlapAdd) -> None:
        if ctrl is None:
            return
        self._tonal.push({"tonal": ctrl["tonal"]}, dry)
        self._noise.push(ctrl["noise"], dry)
        self._shots.push(ctrl["strikes"], dry)

    def push(self, f0_hz: np.ndarray | None, loudness_db: np.ndarray, dry: OverlapAdd) -> None:
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
            ref = None
            if reference_loudness is not None:
                ref = torch.from_numpy(self._loudness(reference_loudness)).unsqueeze(0)
            self._voice: _PitchedVoice | _DrumVoice = _DrumVoice(model, generator, ref)
        elif reference_loudness is not None:
            raise EnsembleError("reference_loudness is for drum decoders; a GRU needs none.")
        else:
            self._voice = _PitchedVoice(model, generator)
        room = model.reverb.impulse_response().detach().numpy()
        self._reverb = PartitionedConvolution(room, REVERB_PARTITION)  # the wet path only
        self._dry = OverlapAdd()
        self._pending = np.zeros(4 * self.block_size, np.float32)  # final, not yet in a block
        self._held = 0  # samples in _pending
        self._done = 0  # samples final
        self.frames = 0
        self._finished = False
        self.latency = stream_latency(self.config, self.block_size)

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.latency / self.config.sample_rate

    def _loudness(self, loudness_db: np.ndarray) -> np.ndarray:
        loud = np.asarray(loudness_db, np.float32)
        if loud.ndim != 1:
            raise EnsembleError(f"loudness_db must be one value per frame (F,), not {loud.shape}.")
        return loud

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
            if f0.shape != loud.shape:
                raise EnsembleError(f"f0_hz {f0.shape} and loudness_db {loud.shape} differ.")
        if loud.size == 0:  # a block that no frame centre falls in
            return self._emit(self._done)
        with one_torch_thread(), np_layers.one_blas_thread():
            self._voice.push(f0, loud, self._dry)
            self.frames += loud.size
            return self._emit(self._voice.ready)

    @torch.inference_mode()
    def finish(self) -> np.ndarray:
        """The remaining blocks, up to the render's frames · hop samples, the last zero-padded."""
        if self._finished:
            return np.zeros((0, self.block_size), np.float32)
        self._finished = True
        with one_torch_thread(), np_layers.one_blas_thread():
            self._voice.finish(self._dry)
            blocks = self._emit(self.frames * self.config.hop_length)
        if self._held == 0:
            return blocks
        last = np.zeros((1, self.block_size), np.float32)
        last[0, : self._held] = self._pending[: self._held]
        return np.concatenate([blocks, last])

    def _emit(self, ready: int) -> np.ndarray:
        """Make samples up to ``ready`` final (dry + wet) → (n, block_size) whole blocks."""
        if ready > self._done:
            dry = self._dry.take(ready)
            end = self._held + dry.size
            if end > self._pending.size:
                self._pending = np.concatenate([self._pending, np.zeros(end, np.float32)])
            np.add(dry, self._reverb.process(dry), out=self._pending[self._held : end])
            self._held, self._done = end, ready
        size = self.block_size
        n = self._held // size
        blocks = self._pending[: n * size].reshape(n, size).copy()
        self._held -= n * size
        self._pending[: self._held] = self._pending[n * size : n * size + self._held]
        return blocks
