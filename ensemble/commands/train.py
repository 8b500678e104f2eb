"""`python -m ensemble train instrument|conductor`: the CLI of `ensemble.training` (which parses
nothing itself). Both share the loop's options: --steps, --time-limit, --val-every, --device,
--threads, --seed, --resume, --quiet."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from ensemble.config import AUDIO_RATES
from ensemble.limits import (
    BATCH_SIZE,
    EXCERPT_SECONDS,
    HIDDEN_SIZE,
    LEARNING_RATE,
    MINUTES,
    STEPS,
    THREADS,
)
from ensemble.outputs import check_writable

if TYPE_CHECKING:
    from ensemble.training.instrument import TrainOptions


def _loop_options(parser: argparse.ArgumentParser, steps: int, val_every: int) -> None:
    parser.add_argument("--data", required=True, type=Path, help="corpus root holding cache/")
    parser.add_argument("--steps", type=STEPS.arg(int), default=steps,
                        help=f"optimizer steps (default {steps})")  # fmt: skip
    parser.add_argument(
        "--time-limit", "--max-minutes", dest="time_limit", type=MINUTES.arg(),
        help="stop (after a last validation and save) once this many minutes are spent",
    )  # fmt: skip
    parser.add_argument("--val-every", type=STEPS.arg(int), default=val_every)
    parser.add_argument("--batch-size", type=BATCH_SIZE.arg(int), help="examples per step")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=THREADS.arg(int),
                        help="CPU threads (default: torch's choice)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _instrument_parser(inner: argparse._SubParsersAction) -> None:
    from ensemble.training.instrument import TrainOptions

    parser = inner.add_parser(
        "instrument",
        help="train one specialist instrument decoder from the feature cache",
        description="Train a DDSP decoder for one instrument on its stems in a feature cache "
        "(the cache folder with splits.json is all it reads at 16 kHz). Resumable; writes "
        "model.safetensors, config.json, train_log.jsonl and train_state.pt into --out.",
    )
    _loop_options(parser, TrainOptions.steps, TrainOptions.val_every)
    parser.add_argument("--instrument", required=True, help="canonical name, e.g. violin, drums")
    parser.add_argument("--out", type=Path, help="checkpoint folder (default checkpoints/<name>)")
    parser.add_argument("--seconds", type=EXCERPT_SECONDS.arg(),
                        help="excerpt length (default 2 on cuda, 1 on cpu)")  # fmt: skip
    parser.add_argument("--lr", type=LEARNING_RATE.arg(), default=TrainOptions.lr,
                        help=LEARNING_RATE.describe())  # fmt: skip
    parser.add_argument("--hidden-size", type=HIDDEN_SIZE.arg(int),
                        help="override the decoder width")  # fmt: skip
    parser.add_argument("--amp", action="store_true", help="bf16 autocast for the network (CUDA)")
    parser.add_argument("--init", help="fine-tune from this checkpoint (a shipped name such as "
                        "drums, or a folder) instead of starting from scratch")  # fmt: skip
    parser.add_argument(
        "--sample-rate", type=int, choices=AUDIO_RATES,
        help="rate the decoder renders at (default: the --init checkpoint's, else 16000); "
        "above 16 kHz the corpus must be rendered at it (corpus render --sample-rate)",
    )  # fmt: skip
    parser.set_defaults(func=_train_instrument)


def instrument_options(args: argparse.Namespace) -> TrainOptions:
    """CLI arguments → TrainOptions; batch and excerpt length default by device."""
    from ensemble.training.instrument import TrainOptions

    gpu = args.device == "cuda"
    return TrainOptions(
        steps=args.steps,
        batch_size=args.batch_size or (TrainOptions.batch_size if gpu else 8),
        seconds=args.seconds or (TrainOptions.seconds if gpu else 1.0),
        lr=args.lr,
        device=args.device,
        amp=args.amp,
        time_limit_min=args.time_limit,
        val_every=args.val_every,
        seed=args.seed,
        threads=args.threads,
        resume=args.resume,
        init=args.init,
        progress=not args.quiet,
    )


def _train_instrument(args: argparse.Namespace) -> int:
    from ensemble.instrument import CHECKPOINT_ROOT
    from ensemble.training.instrument import train_instrument

    out = check_writable(args.out or CHECKPOINT_ROOT / args.instrument)
    options = instrument_options(args)
    train_instrument(args.data, args.instrument, out, options, args.hidden_size, args.sample_rate)
    print(f"wrote {out}")
    return 0


def _conductor_parser(inner: argparse._SubParsersAction) -> None:
    parser = inner.add_parser(
        "conductor",
        help="train the conductor (leader features -> follower parts)",
        description="Train the conductor on a cached multitrack corpus.",
    )
    _loop_options(parser, steps=5000, val_every=250)
    parser.add_argument("--out", type=Path, default=Path("checkpoints/conductor"),
                        help="checkpoint folder")  # fmt: skip
    parser.set_defaults(func=_train_conductor)


def _train_conductor(args: argparse.Namespace) -> int:
    from ensemble.training.conductor import train_conductor

    metrics = train_conductor(
        Path(args.data),
        check_writable(args.out),
        steps=args.steps,
        device=args.device,
        resume=args.resume,
        batch_size=args.batch_size or 32,
        max_minutes=args.time_limit,
        threads=args.threads,
        seed=args.seed,
        val_every=args.val_every,
        progress=not args.quiet,
    )
    print(json.dumps({"validation": metrics, "out": str(args.out)}))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train an instrument decoder or the conductor")
    inner = parser.add_subparsers(dest="what", metavar="WHAT", required=True)
    _instrument_parser(inner)
    _conductor_parser(inner)
