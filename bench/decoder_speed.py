"""Decoder speed: render × real time on CPU (offline, streaming, onnxruntime), training steps/s.

    python bench/decoder_speed.py                          # render 10 s, both kinds
    python bench/decoder_speed.py --stream --onnx          # + streaming, onnxruntime
    python bench/decoder_speed.py --train --batch-size 8 --seconds 1      # CPU training steps/s
    python bench/decoder_speed.py --train --device cuda --batch-size 16 32 64 --seconds 2

Rendering goes through `Instrument.render` (which runs on one CPU thread) with the shipped
architecture (trained weights when ``checkpoints/<name>`` exists, else
random ones: speed does not depend on the weights). Training steps are full steps on random
excerpts: forward, multi-scale loss, backward, Adam. Prints a table and writes JSON with --json.

``--stream`` times `Instrument.stream` the way a host drives it: per block, the control frames
whose centres it has reached are pushed; reported are × real time (median of ``--repeats``
streams), the compute per block (median, worst) and the stream's latency
(`ensemble.streaming.stream_latency`). ``--onnx`` exports each decoder (`ensemble.onnx_export`)
and times onnxruntime on one thread. Both run for the shipped decoder where its rate is the one
asked for, else for an untrained one of the shipped architecture at that rate
(`default_config`; at 44.1 kHz: hop 441, 100 harmonics, 129 noise bands, drums striking on a
hop/3 grid and normalising per frame). The load average is printed first: on the shared 2-core
machine it moves the timings more than most changes do.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _timing import timed

from ensemble.config import FRAME_RATE, HOP_LENGTH
from ensemble.dsp import multiscale_spectral_loss
from ensemble.instrument import (
    Instrument,
    build_decoder,
    decode,
    default_config,
    list_pretrained,
)

BLOCKS = (128, 256, 512, 1024)


def decoder(kind: str, sample_rate: int) -> Instrument:
    """The shipped decoder of ``kind`` at its rate, or an untrained one of the shipped
    architecture at that rate (`default_config`: at 44.1 kHz hop 441, 100 harmonics, 129 noise
    bands, drums striking 3 times a frame and normalising per frame)."""
    name = {"pitched": "violin", "drums": "drums"}[kind]
    if name in list_pretrained():
        shipped = Instrument.from_pretrained(name)
        if shipped.config.sample_rate == sample_rate:
            return shipped
    torch.manual_seed(0)
    return Instrument(default_config(name, kind, sample_rate))


def controls(frames: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    f0 = (220.0 * 2 ** (rng.normal(0, 0.1, frames).cumsum() / 12)).astype(np.float32)
    loud = np.clip(rng.normal(-30, 5, frames), -80, 0).astype(np.float32)
    return f0, loud


def stream_speed(inst: Instrument, seconds: float, block: int, repeats: int) -> dict:
    """Blocks of a stream fed as a host would, ``repeats`` times after a warm-up; × real time
    is the median over the repeats, compute per block over all their blocks."""
    cfg = inst.config
    frames = int(seconds * cfg.sample_rate / cfg.hop_length)
    f0, loud = controls(frames)
    clip_norm = inst.kind == "drums" and cfg.conv_norm == "clip"
    walls, times = [], []
    for _ in range(repeats + 1):
        stream = inst.stream(block, reference_loudness=loud if clip_norm else None)
        run, fed = [], 0
        for i in range(frames * cfg.hop_length // block):
            due = min(frames, (i + 1) * block // cfg.hop_length + 1)  # frame centres passed
            start = time.perf_counter()
            stream.push(f0[fed:due], loud[fed:due])
            run.append(time.perf_counter() - start)
            fed = due
        walls.append(sum(run))
        times += run
    times = times[len(times) // (repeats + 1) :]  # the warm-up's blocks are left out
    return {
        "kind": inst.kind,
        "sample_rate": cfg.sample_rate,
        "block": block,
        "x_realtime": round(seconds / float(np.median(walls[1:])), 1),
        "block_ms_median": round(1000 * float(np.median(times)), 3),
        "block_ms_max": round(1000 * max(times), 3),
        "latency_samples": stream.latency,
        "latency_ms": round(stream.latency_ms, 1),
    }


def onnx_speed(inst: Instrument, seconds: float, repeats: int) -> dict:
    """Export (10 s graph by default), then onnxruntime on one thread."""
    import onnxruntime as ort

    from ensemble.onnx_export import example_inputs, export_onnx

    cfg = inst.config
    frames = int(seconds * cfg.sample_rate / cfg.hop_length)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "decoder.onnx"
        report = export_onnx(inst, path, frames=frames)
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        inputs = example_inputs(inst, frames, seed=1)
        wall = timed(lambda: session.run(["audio"], inputs), repeats, np.median)[0]
    return {
        "kind": inst.kind,
        "sample_rate": cfg.sample_rate,
        "x_realtime": round(seconds / wall, 1),
        "max_abs_error": float(f"{report.max_abs_error:.3g}"),
        "peak": round(report.peak, 3),
    }


def render_speed(kind: str, seconds: float, repeats: int) -> dict:
    name = {"pitched": "violin", "drums": "drums"}[kind]
    trained = name in list_pretrained()
    inst = Instrument.from_pretrained(name) if trained else Instrument(default_config(name, kind))
    n = int(seconds * FRAME_RATE)
    rng = np.random.default_rng(0)
    f0 = (220.0 * 2 ** (rng.normal(0, 0.1, n).cumsum() / 12)).astype(np.float32)
    loud = np.clip(rng.normal(-30, 5, n), -80, 0).astype(np.float32)
    wall = timed(lambda: inst.render(f0, loud), repeats, np.median)[0]
    return {
        "kind": kind,
        "weights": "trained" if trained else "random",
        "seconds": seconds,
        "wall_s": round(wall, 4),
        "x_realtime": round(seconds / wall, 1),
        "parameters": sum(p.numel() for p in inst.model.parameters()),
    }


def train_speed(kind: str, device: str, batch: int, seconds: float, steps: int, amp: bool) -> dict:
    torch.manual_seed(0)
    model = build_decoder(default_config("bench", kind)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    frames = int(seconds * FRAME_RATE)
    f0 = 110.0 + 400.0 * torch.rand(batch, 1, device=device).expand(batch, frames).contiguous()
    loud = -60.0 + 40.0 * torch.rand(batch, frames, device=device)
    target = 0.1 * torch.randn(batch, frames * HOP_LENGTH, device=device)
    use_amp = amp and device.startswith("cuda")

    def step() -> None:
        with torch.autocast(device.split(":")[0], torch.bfloat16, enabled=use_amp):
            pred = decode(model, f0 if kind == "pitched" else None, loud)
        loss = multiscale_spectral_loss(pred, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def run() -> None:
        for _ in range(steps):
            step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    wall = timed(run, 1, np.median)[0]
    return {
        "kind": kind,
        "device": device,
        "batch": batch,
        "seconds": seconds,
        "amp": use_amp,
        "steps_per_s": round(steps / wall, 2),
        "audio_s_per_s": round(steps * batch * seconds / wall, 1),
    }


def stream_and_onnx(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """--stream / --onnx for each rate and kind: print and append to ``results``."""
    for rate in args.rates if args.stream or args.onnx else ():
        for kind in args.kinds:
            inst = decoder(kind, rate)
            for block in BLOCKS if args.stream else ():
                r = stream_speed(inst, args.seconds_render, block, args.repeats)
                results["stream"].append(r)
                print(
                    f"  stream {kind:8s} {rate:5d} Hz block {block:4d}  {r['x_realtime']:6.1f}x "
                    f"real time  {r['block_ms_median']:6.3f} ms/block (max {r['block_ms_max']:.2f})"
                    f"  latency {r['latency_samples']:5d} samples = {r['latency_ms']:6.1f} ms"
                )
            if args.onnx:
                r = onnx_speed(inst, args.seconds_render, args.repeats)
                results["onnx"].append(r)
                print(
                    f"  onnx   {kind:8s} {rate:5d} Hz  {r['x_realtime']:6.1f}x real time  "
                    f"max abs error vs torch {r['max_abs_error']:.2e} (peak {r['peak']})"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for training steps")
    parser.add_argument("--seconds-render", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train", action="store_true", help="also time training steps")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[8])
    parser.add_argument("--seconds", type=float, default=1.0, help="training excerpt length")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA)")
    parser.add_argument("--kinds", nargs="+", default=["pitched", "drums"])
    parser.add_argument("--stream", action="store_true", help="also time streaming renders")
    parser.add_argument("--onnx", action="store_true", help="also export and time onnxruntime")
    parser.add_argument("--rates", type=int, nargs="+", default=[16_000, 44_100],
                        help="sample rates for --stream/--onnx")  # fmt: skip
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    results: dict[str, Any] = {"render": [], "stream": [], "onnx": [], "train": []}
    results["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(f"load average {' '.join(map(str, results['load_average']))} (1, 5, 15 min)")
    print(f"render {args.seconds_render:g} s on CPU (Instrument.render):")
    for kind in args.kinds:
        r = render_speed(kind, args.seconds_render, args.repeats)
        results["render"].append(r)
        print(
            f"  {kind:8s} {r['weights']:7s} {r['parameters'] / 1e6:5.2f} M params  "
            f"{r['wall_s'] * 1000:7.1f} ms  {r['x_realtime']:6.1f}x real time"
        )
    stream_and_onnx(args, results)
    if args.train:
        print(f"training on {args.device}, excerpts of {args.seconds:g} s:")
        for kind in args.kinds:
            for batch in args.batch_size:
                r = train_speed(kind, args.device, batch, args.seconds, args.steps, args.amp)
                results["train"].append(r)
                print(
                    f"  {kind:8s} batch {batch:4d} amp={r['amp']!s:5s} {r['steps_per_s']:7.2f} "
                    f"steps/s  {r['audio_s_per_s']:8.1f} s of audio/s"
                )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
