"""ONNX export of a decoder (controls network + DSP synth + reverb: frames → audio).

The exported graph renders a fixed number of frames (torch.export specialises the synth's FFT
sizes and chunk loop on the length): a host pads or windows its controls to that length. Its
inputs, all float32:

- ``f0_hz`` (1, T), voiced pitch in Hz (hold the last pitch through unvoiced frames, as
  `ensemble.instrument.fill_unvoiced_f0` does; pitched decoders only);
- ``loudness_db`` (1, T);
- ``noise`` (1, T + 1, hop) uniform in [-1, 1): the filtered-noise source, an input so that a
  render is deterministic and checkable against torch.

Output ``audio`` (1, T · hop) at the decoder's sample rate. The GRU runs over the whole input
from a zero state (`Instrument.render` runs clips over 3.5 s in warmed-up segments instead).
Uses torch's dynamo exporter (needs ``onnx`` and ``onnxscript``) and checks the file with
onnxruntime.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ensemble.instrument import Instrument, decode, fill_unvoiced_f0
from ensemble.outputs import replace_file


@dataclass
class ExportReport:
    path: Path
    frames: int
    seconds: float
    max_abs_error: float  # onnxruntime vs torch on a fresh random track
    peak: float  # the torch render's peak, for scale


class _Renderer(nn.Module):
    """The decoder's forward with explicit noise (and no f0 for drums)."""

    def __init__(self, instrument: Instrument) -> None:
        super().__init__()
        self.model = instrument.model
        self.pitched = instrument.kind == "pitched"

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        f0, loudness, noise = inputs if self.pitched else (None, *inputs)
        return decode(self.model, f0, loudness, None, noise)


@contextlib.contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """Hold the named loggers at ERROR while the block runs."""
    saved = [(logging.getLogger(n), logging.getLogger(n).level) for n in loggers]
    for logger, _ in saved:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)


def example_inputs(instrument: Instrument, frames: int, seed: int) -> dict[str, np.ndarray]:
    """A random pitch walk and loudness contour with uniform noise, as the graph's inputs."""
    rng = np.random.default_rng(seed)
    hop = instrument.config.hop_length
    inputs = {}
    if instrument.kind == "pitched":
        f0 = 220.0 * 2.0 ** (rng.normal(0.0, 0.3, frames).cumsum() / 12.0)
        inputs["f0_hz"] = fill_unvoiced_f0(f0)[None]
    loud = np.clip(-30.0 + 2.5 * rng.normal(0.0, 1.0, frames).cumsum(), -90.0, 0.0)
    inputs["loudness_db"] = loud.astype(np.float32)[None]
    inputs["noise"] = rng.uniform(-1.0, 1.0, (1, frames + 1, hop)).astype(np.float32)
    return inputs


def export_onnx(instrument: Instrument, out: str | Path, *, frames: int) -> ExportReport:
    """Write ``out`` (replaced whole, or left as it was on failure) and check it against torch."""
    import onnxruntime as ort

    renderer = _Renderer(instrument).eval()
    segment, instrument.model.segment_frames = (
        getattr(instrument.model, "segment_frames", None),
        None,
    )
    try:
        example = example_inputs(instrument, frames, seed=0)
        with replace_file(out) as tmp, torch.inference_mode(False), torch.no_grad():
            # The exporter narrates every stage (stdout, INFO logs); the command reports once.
            # Its notices about torch's own internals (GRU weights, pytree) are not ours to fix.
            with (
                contextlib.redirect_stdout(io.StringIO()),
                _quiet("onnxscript", "torch.onnx"),
                warnings.catch_warnings(),
            ):
                warnings.simplefilter("ignore", (UserWarning, FutureWarning))
                torch.onnx.export(
                    renderer,
                    tuple(torch.from_numpy(v) for v in example.values()),
                    str(tmp),
                    dynamo=True,
                    external_data=False,
                    input_names=list(example),
                    output_names=["audio"],
                )
            session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
            check = example_inputs(instrument, frames, seed=1)
            got = session.run(["audio"], check)[0]
            want = renderer(*(torch.from_numpy(v) for v in check.values())).numpy()
    finally:
        if segment is not None:
            instrument.model.segment_frames = segment
    rate = instrument.config.sample_rate
    return ExportReport(
        path=Path(out),
        frames=frames,
        seconds=frames * instrument.config.hop_length / rate,
        max_abs_error=float(np.abs(got - want).max()),
        peak=float(np.abs(want).max()),
    )
