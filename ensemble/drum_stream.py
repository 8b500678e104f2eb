"""The drum decoder's conv stack run frame by frame (the controls half of a drum `RenderStream`).

`DrumDecoder`'s dilated convs are centred: layer l's output at frame t reads frames
t ± dilation_l · (kernel - 1) / 2, so frame t's controls wait for frame t + Σ_l of those (66
frames, 0.66 s, with the shipped dilations). Each layer keeps the frames its kernel still needs
and emits an output as soon as its look-ahead has arrived; `finish` supplies the zero padding the
offline convs see after the last frame. The arithmetic is numpy (`ensemble.np_layers`): a frame
is a (1, 128) row, where torch's per-op overhead was nearly all of a push's cost.

The 16 kHz kit's GroupNorm(1, C) normalises over all channels *and the whole clip*, which no
stream can know in advance. A stream either takes each layer's statistics from a reference
loudness track given up front (the clip itself reproduces the offline render; a representative
groove approximates it) or, live, from the frames heard so far. Kits with ``conv_norm="frame"``
(the 44.1 kHz ones) normalise each frame alone and stream exactly, live.
"""

from __future__ import annotations

import numpy as np
import torch

from ensemble import np_layers
from ensemble.instrument import DrumDecoder, FrameNorm, _ResidualConv, onset_features


def clip_statistics(model: DrumDecoder, loudness_db: torch.Tensor) -> list[np.ndarray]:
    """Per conv block, the (mean, variance) its GroupNorm computes over a (1, T) loudness clip."""
    with torch.inference_mode():
        x = model.input(onset_features(loudness_db, model.config))
        stats = []
        for block in model.blocks:
            stats.append(np.array([x.mean().item(), x.var(correction=0).item()], np.float32))
            x = block(x)
    return stats


class _Rows:
    """A growing (N, C) array of frames with the oldest dropped from the front, in one buffer."""

    def __init__(self, channels: int, rows: int = 0) -> None:
        self._data = np.zeros((max(256, 2 * rows), channels), np.float32)
        self._begin, self._end = 0, rows  # the first `rows` are zeros (a conv's left padding)

    def append(self, rows: np.ndarray) -> None:
        n = rows.shape[0]
        if self._end + n > self._data.shape[0]:  # move the live rows to the front (or grow)
            live = self.view().copy()
            size = max(self._data.shape[0], 2 * (live.shape[0] + n))
            self._data = np.zeros((size, self._data.shape[1]), np.float32)
            self._data[: live.shape[0]] = live
            self._begin, self._end = 0, live.shape[0]
        self._data[self._end : self._end + n] = rows
        self._end += n

    def view(self) -> np.ndarray:
        return self._data[self._begin : self._end]

    def drop(self, n: int) -> None:
        self._begin += n


class _LayerStream:
    """One `_ResidualConv` frame by frame. Invariant: the normalised frames ``_z`` hold the
    inputs waiting for their output (``_x``) plus the ``pad`` frames of left context."""

    def __init__(self, block: _ResidualConv, stats: np.ndarray | None) -> None:
        conv = block.conv
        self.pad, self.dilation = conv.padding[0], conv.dilation[0]
        self.lookahead = self.dilation * (conv.kernel_size[0] - 1) - self.pad
        weight = conv.weight.detach().numpy()  # (C_out, C_in, kernel)
        # Taps stacked: one (n, kernel · C) @ (kernel · C, C) product per push, not one per tap.
        self._taps = weight.transpose(2, 1, 0).reshape(-1, weight.shape[0]).copy()
        self._kernel = weight.shape[-1]
        self._bias = conv.bias.detach().numpy().copy()
        norm = block.norm
        self._frame_norm = np_layers.layer_norm(norm) if isinstance(norm, FrameNorm) else None
        self._affine = (norm.weight.detach().numpy().copy(), norm.bias.detach().numpy().copy())
        self._eps, self._stats = norm.eps, stats
        self._z = _Rows(conv.in_channels, self.pad)  # the offline conv's left zero padding
        self._x = _Rows(conv.in_channels)
        self._sums = np.zeros(2)  # running Σx, Σx² (live statistics)
        self._count = 0

    def _normalise(self, x: np.ndarray) -> np.ndarray:
        """(F, C) → GroupNorm(1, C) with fixed or running (mean, var), then the affine; a
        `FrameNorm` needs no statistics beyond the frame itself."""
        if self._frame_norm is not None:
            return self._frame_norm(x)
        if self._stats is not None:
            mean, var = self._stats[0], self._stats[1]
        else:
            # Frame u is normalised by the statistics of frames 0..u, so blocks of any size
            # give the same result.
            wide = x.astype(np.float64)
            per_frame = np.stack([wide.sum(1), (wide * wide).sum(1)])
            sums = self._sums[:, None] + per_frame.cumsum(1)  # (2, F)
            self._sums = sums[:, -1] if x.shape[0] else self._sums
            count = x.shape[1] * (self._count + np.arange(1, x.shape[0] + 1))
            self._count += x.shape[0]
            mean = sums[0] / count
            var = np.maximum(sums[1] / count - mean * mean, 0.0)
            mean, var = mean.astype(np.float32)[:, None], var.astype(np.float32)[:, None]
        weight, bias = self._affine
        return (x - mean) / np.sqrt(var + np.float32(self._eps)) * weight + bias

    def push(self, x: np.ndarray) -> np.ndarray:
        """(F, C) new inputs → (F', C) the outputs whose look-ahead is now complete."""
        self._z.append(np_layers.leaky_relu(self._normalise(x)))
        self._x.append(x)
        return self._emit()

    def finish(self) -> np.ndarray:
        """The remaining outputs, reading zeros after the last frame (the conv's right pad)."""
        self._z.append(np.zeros((self.lookahead, self._bias.shape[0]), np.float32))
        return self._emit()

    def _emit(self) -> np.ndarray:
        z = self._z.view()
        n = z.shape[0] - self.pad - self.lookahead
        if n <= 0:
            return self._x.view()[:0].copy()
        d = self.dilation
        taps = np.concatenate([z[j * d : j * d + n] for j in range(self._kernel)], axis=1)
        y = self._x.view()[:n] + (taps @ self._taps + self._bias)
        self._z.drop(n)
        self._x.drop(n)
        return y


class DrumControlStream:
    """`DrumDecoder.controls` frame by frame, `delay` frames behind its input; controls as
    (F, ...) numpy arrays: ``noise`` (F, M), ``tonal`` (F, n_tonal), ``strikes``
    (F · strikes_per_frame, n_one_shots).

    Args:
        model: the decoder.
        reference_loudness: optional (1, T) loudness track whose GroupNorm statistics every
            frame uses (None: the running statistics of the frames heard so far).
    """

    def __init__(self, model: DrumDecoder, reference_loudness: torch.Tensor | None) -> None:
        cfg = self.config = model.config
        stats = (
            clip_statistics(model, reference_loudness)
            if reference_loudness is not None
            else [None] * len(model.blocks)
        )
        self.layers = [_LayerStream(b, s) for b, s in zip(model.blocks, stats, strict=True)]
        self.delay = sum(layer.lookahead for layer in self.layers)
        self._input, self._head = np_layers.dense(model.input), np_layers.dense(model.head)
        low, high = cfg.loudness_range_db
        self._scale = (np.float32(low), np.float32(high - low))
        self._last: np.ndarray | None = None  # the previous frame's scaled loudness

    def _features(self, loudness_db: np.ndarray) -> np.ndarray:
        """`onset_features` (F,) → (F, 3), the first rise/fall measured from the last frame."""
        low, span = self._scale
        loud = np.clip((loudness_db - low) / span, 0.0, 1.0)
        before = loud[:1] if self._last is None else self._last
        delta = np.diff(loud, prepend=before)
        self._last = loud[-1:] if loud.size else self._last
        return np.stack([loud, 5.0 * np.maximum(delta, 0.0), 5.0 * np.maximum(-delta, 0.0)], 1)

    def push(self, loudness_db: np.ndarray) -> dict[str, np.ndarray] | None:
        """(F,) loudness → controls of the frames now complete, None while the look-ahead
        fills."""
        x = self._input(self._features(loudness_db.astype(np.float32)))
        for layer in self.layers:
            x = layer.push(x)
        return self._controls(x)

    def finish(self) -> dict[str, np.ndarray] | None:
        """Controls of the last ``delay`` frames."""
        x = self.layers[0].finish()
        for layer in self.layers[1:]:
            x = np.concatenate([layer.push(x), layer.finish()])
        return self._controls(x)

    def _controls(self, features: np.ndarray) -> dict[str, np.ndarray] | None:
        """(F, C) last-layer features → controls (None for no frames), as
        `DrumDecoder.controls_from_features`."""
        if features.shape[0] == 0:
            return None
        raw = self._head(features)
        m, k = self.config.n_noise_bands, self.config.n_tonal
        envelope = np_layers.exp_sigmoid(raw[:, :1])
        strikes = raw[:, 1 + m + k :].reshape(raw.shape[0] * self.config.strikes_per_frame, -1)
        return {
            "noise": envelope * np_layers.exp_sigmoid(raw[:, 1 : 1 + m]),
            "tonal": envelope * np_layers.exp_sigmoid(raw[:, 1 + m : 1 + m + k]),
            "strikes": np_layers.exp_sigmoid(strikes),
        }
