"""Decoder speed: render × real time on CPU, and training steps/s on CPU or CUDA.

    python bench/decoder_speed.py                          # render 10 s, both kinds
    python bench/decoder_speed.py --train --batch-size 8 --seconds 1      # CPU training steps/s
    python bench/decoder_speed.py --train --device cuda --batch-size 16 32 64 --seconds 2

Rendering goes through `Instrument.render` (which runs on one CPU thread) with the shipped
architecture (trained weights when ``checkpoints/<name>`` exists, else
random ones: speed does not depend on the weights). Training steps are full steps on random
excerpts: forward, multi-scale loss, backward, Adam. Prints a table and writes JSON with --json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from _timing import timed

from ensemble.config import FRAME_RATE, HOP_LENGTH
from ensemble.dsp import multiscale_spectral_loss
from ensemble.instrument import Instrument, build_decoder, default_config, list_pretrained


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
            pred = model(f0 if kind == "pitched" else None, loud)
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
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    results: dict[str, list] = {"render": [], "train": []}
    print(f"render {args.seconds_render:g} s on CPU (Instrument.render):")
    for kind in args.kinds:
        r = render_speed(kind, args.seconds_render, args.repeats)
        results["render"].append(r)
        print(
            f"  {kind:8s} {r['weights']:7s} {r['parameters'] / 1e6:5.2f} M params  "
            f"{r['wall_s'] * 1000:7.1f} ms  {r['x_realtime']:6.1f}x real time"
        )
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
