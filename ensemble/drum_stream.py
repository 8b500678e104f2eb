"""The drum decoder's conv stack run frame by frame (the controls half of a drum `RenderStream`).

`DrumDecoder`'s dilated convs are centred: layer l's output at frame t reads frames
t ± dilation_l · (kernel - 1) / 2, so frame t's controls wait for frame t + Σ_l of those (66
frames, 0.66 s, with the shipped dilations). Each layer keeps the frames its kernel still needs
and emits an output as soon as its look-ahead has arrived; `finish` supplies the zero padding the
offline convs see after the last frame.

The 16 kHz kit's GroupNorm(1, C) normalises over all channels *and the whole clip*, which no
stream can know in advance. A stream either takes each layer's statistics from a reference
loudness track given up front (the clip itself reproduces the offline render; a representative
groove approximates it) or, live, from the frames heard so far. Kits with ``conv_norm="frame"``
(the 44.1 kHz ones) normalise each frame alone and stream exactly, live.
"""

from __future__ import annotations

import torch
from torch import nn

from ensemble.instrument import DrumDecoder, FrameNorm, _ResidualConv, onset_features


def clip_statistics(model: DrumDecoder, loudness_db: torch.Tensor) -> list[torch.Tensor]:
    """Per conv block, the (mean, variance) its GroupNorm computes over a (1, T) loudness clip."""
    x = model.input(onset_features(loudness_db, model.config))
    stats = []
    for block in model.blocks:
        stats.append(torch.stack([x.mean(), x.var(correction=0)]))
        x = block(x)
    return stats


class _LayerStream:
    """One `_ResidualConv` frame by frame. Invariant: the normalised frames ``_z`` hold the
    inputs waiting for their output (``_x``) plus the ``pad`` frames of left context."""

    def __init__(self, block: _ResidualConv, stats: torch.Tensor | None) -> None:
        self.block = block
        conv = block.conv
        self.pad, self.dilation = conv.padding[0], conv.dilation[0]
        self.lookahead = self.dilation * (conv.kernel_size[0] - 1) - self.pad
        channels = conv.in_channels
        self._z = torch.zeros(1, channels, self.pad)  # the offline conv's left zero padding
        self._x = torch.zeros(1, channels, 0)
        self._stats = stats
        self._sums = torch.zeros(2, dtype=torch.float64)  # running Σx, Σx² (live statistics)
        self._count = 0

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        """(1, C, F) → GroupNorm(1, C) with fixed or running (mean, var), then the affine; a
        `FrameNorm` needs no statistics beyond the frame itself."""
        norm = self.block.norm
        if isinstance(norm, FrameNorm):
            return norm(x)
        if self._stats is not None:
            mean, var = self._stats[0], self._stats[1]
        else:
            # Frame u is normalised by the statistics of frames 0..u, so blocks of any size
            # give the same result.
            per_frame = torch.stack([x.double().sum(1)[0], x.double().pow(2).sum(1)[0]])
            sums = self._sums.unsqueeze(1) + per_frame.cumsum(1)  # (2, F)
            self._sums = sums[:, -1] if x.shape[-1] else self._sums
            count = x.shape[1] * (self._count + torch.arange(1, x.shape[-1] + 1))
            self._count += x.shape[-1]
            mean = sums[0] / count
            var = (sums[1] / count - mean.pow(2)).clamp_min(0.0)
            mean, var = mean.float(), var.float()
        z = (x - mean) / torch.sqrt(var + norm.eps)
        return z * norm.weight.view(1, -1, 1) + norm.bias.view(1, -1, 1)

    def push(self, x: torch.Tensor) -> torch.Tensor:
        """(1, C, F) new inputs → (1, C, F') the outputs whose look-ahead is now complete."""
        z = nn.functional.leaky_relu(self._normalise(x))
        self._z = torch.cat([self._z, z], dim=-1)
        self._x = torch.cat([self._x, x], dim=-1)
        return self._emit()

    def finish(self) -> torch.Tensor:
        """The remaining outputs, reading zeros after the last frame (the conv's right pad)."""
        self._z = torch.nn.functional.pad(self._z, (0, self.lookahead))
        return self._emit()

    def _emit(self) -> torch.Tensor:
        n = self._z.shape[-1] - self.pad - self.lookahead
        if n <= 0:
            return self._x[..., :0]
        conv = self.block.conv
        y = nn.functional.conv1d(self._z, conv.weight, conv.bias, dilation=self.dilation)
        out = self._x[..., :n] + y
        self._z, self._x = self._z[..., n:], self._x[..., n:]
        return out


class DrumControlStream:
    """`DrumDecoder.controls` frame by frame, `delay` frames behind its input.

    Args:
        model: the decoder.
        reference_loudness: optional (1, T) loudness track whose GroupNorm statistics every
            frame uses (None: the running statistics of the frames heard so far).
    """

    def __init__(self, model: DrumDecoder, reference_loudness: torch.Tensor | None) -> None:
        self.model = model
        stats = (
            clip_statistics(model, reference_loudness)
            if reference_loudness is not None
            else [None] * len(model.blocks)
        )
        self.layers = [_LayerStream(b, s) for b, s in zip(model.blocks, stats, strict=True)]
        self.delay = sum(layer.lookahead for layer in self.layers)
        self._last_db: torch.Tensor | None = None

    def push(self, loudness_db: torch.Tensor) -> dict[str, torch.Tensor] | None:
        """(1, F) loudness → controls of the frames now complete (as `DrumDecoder.controls`),
        None while the look-ahead fills."""
        if self._last_db is None:
            features = onset_features(loudness_db, self.model.config)
        else:  # the rise/fall of the first new frame is measured from the last one
            both = torch.cat([self._last_db, loudness_db], dim=1)
            features = onset_features(both, self.model.config)[..., 1:]
        if loudness_db.shape[1]:
            self._last_db = loudness_db[:, -1:]
        x = self.model.input(features)
        for layer in self.layers:
            x = layer.push(x)
        return self._controls(x)

    def finish(self) -> dict[str, torch.Tensor] | None:
        """Controls of the last ``delay`` frames."""
        x = self.layers[0].finish()
        for layer in self.layers[1:]:
            x = torch.cat([layer.push(x), layer.finish()], dim=-1)
        return self._controls(x)

    def _controls(self, features: torch.Tensor) -> dict[str, torch.Tensor] | None:
        """(1, C, F) last-layer features → controls (None for no frames)."""
        if features.shape[-1] == 0:
            return None
        return self.model.controls_from_features(features.transpose(1, 2))
