"""`python -m ensemble export onnx NAME --out FILE`: a decoder as an onnxruntime graph."""

from __future__ import annotations

import argparse

from ensemble.limits import Range
from ensemble.outputs import check_file

EXPORT_SECONDS = Range("--seconds", 0.1, 120)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("export", help="export a decoder for other runtimes")
    inner = parser.add_subparsers(dest="export_format", metavar="FORMAT", required=True)
    onnx = inner.add_parser(
        "onnx",
        help="decoder (controls network + synth + reverb) as ONNX",
        description="Exports an instrument's decoder as an ONNX graph (inputs f0_hz, loudness_db "
        "and noise for a fixed number of frames; output audio), then renders a random track "
        "with onnxruntime and torch and prints the largest difference.",
    )
    onnx.add_argument("name", help="a shipped instrument (checkpoints/NAME) or a checkpoint folder")
    onnx.add_argument("--out", required=True, help="ONNX file to write")
    onnx.add_argument("--seconds", type=EXPORT_SECONDS.arg(), default=10.0,
                      help="length the graph renders (default 10 s)")  # fmt: skip
    onnx.add_argument("--force", action="store_true", help="replace --out if it exists")
    onnx.set_defaults(func=_onnx)


def _onnx(args: argparse.Namespace) -> int:
    from ensemble.instrument import Instrument
    from ensemble.onnx_export import export_onnx

    check_file(args.out, force=args.force)
    instrument = Instrument.from_pretrained(args.name)
    frames = max(
        1, round(args.seconds * instrument.config.sample_rate / instrument.config.hop_length)
    )
    report = export_onnx(instrument, args.out, frames=frames)
    print(
        f"wrote {report.path}: {instrument.name} ({instrument.kind}), {report.frames} frames "
        f"({report.seconds:g} s at {instrument.config.sample_rate} Hz); onnxruntime vs torch "
        f"max abs error {report.max_abs_error:.2e} (peak {report.peak:.3f})"
    )
    return 0
