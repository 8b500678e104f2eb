"""The one training loop: resume, time budget, learning-rate schedule hook, progress, logging,
validation and checkpoints. Each trainer (`instrument`, `conductor`) fills in a `Trainee`.

Files in the run folder ``out``:
- ``train_state.pt``: step, elapsed time, best score, model, optimizer and RNG states (tensors
  and numbers only, read back with ``weights_only=True``), written atomically at every
  validation, for ``--resume``;
- ``train_log.jsonl``: one JSON line per ``log_every`` steps (``"split": "train"``) and per
  validation (``"split": "validation"``, with ``"best"``);
- the model checkpoint itself, written by the trainee when it decides (every validation, or only
  the best one).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from ensemble.errors import EnsembleError

log = logging.getLogger(__name__)

STATE_FILE = "train_state.pt"
LOG_FILE = "train_log.jsonl"


@dataclass
class LoopOptions:
    """How long and how visibly a run goes; what it learns is the trainee's business."""

    steps: int
    time_limit_min: float | None = None  # wall-clock budget: validate, save and stop when spent
    val_every: int = 500
    log_every: int = 50
    resume: bool = False
    progress: bool = True


class Trainee(Protocol):
    """What a trainer supplies to `run`."""

    name: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator

    def learning_rate(self, step: int, time_progress: float) -> float:
        """The rate for ``step``; ``time_progress`` is the share of the time budget spent."""

    def train_step(self) -> dict[str, torch.Tensor]:
        """One optimisation step (forward, backward, optimizer step); its loss terms, with the
        optimised one under ``"loss"``."""

    def validate(self) -> dict[str, float]:
        """Validation metrics, with ``"score"`` (lower is better)."""

    def save(self, step: int, elapsed_s: float, metrics: dict[str, float], best: bool) -> None:
        """Write the model checkpoint if this trainer keeps this one (every one, or the best)."""

    def extra_state(self) -> dict[str, Any]:
        """What else ``--resume`` needs (tensors, numbers, strings)."""

    def restore(self, state: dict[str, Any]) -> None:
        """Check and take back `extra_state` on resume."""


def prepare_device(device: str, threads: int | None = None) -> torch.device:
    """The torch device, with CUDA checked and TF32 on, and the CPU thread count set."""
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise EnsembleError("--device cuda was asked for but no CUDA GPU is visible; use cpu.")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    if threads:
        torch.set_num_threads(threads)
    return dev


def _save_state(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


@dataclass
class _Progress:
    step: int = 0
    elapsed_s: float = 0.0
    best: float = math.inf


def _start(trainee: Trainee, out: Path, options: LoopOptions) -> _Progress:
    """A fresh run, or the saved one with ``resume``; refuses to overwrite a run."""
    state_path = out / STATE_FILE
    if state_path.exists() and not options.resume:
        raise EnsembleError(
            f"{out} already holds a training run ({STATE_FILE}); pass --resume to continue it "
            "or choose another --out."
        )
    if not (options.resume and state_path.exists()):
        return _Progress()
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    trainee.restore(state)
    trainee.model.load_state_dict(state["model"])
    trainee.optimizer.load_state_dict(state["optimizer"])
    trainee.generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    progress = _Progress(int(state["step"]), float(state["elapsed_s"]), float(state["best"]))
    log.info("resumed %s at step %d", out, progress.step)
    return progress


def _checkpoint(trainee: Trainee, out: Path, at: _Progress, metrics: dict[str, float]) -> bool:
    """Save the model (the trainee decides) and the resume state; True if this one is best."""
    best = metrics["score"] < at.best
    if best:
        at.best = metrics["score"]
    trainee.save(at.step, at.elapsed_s, metrics, best)
    state = {
        "step": at.step,
        "elapsed_s": at.elapsed_s,
        "best": at.best,
        "model": trainee.model.state_dict(),
        "optimizer": trainee.optimizer.state_dict(),
        "generator": trainee.generator.get_state(),
        "torch_rng": torch.get_rng_state(),
    }
    _save_state(out / STATE_FILE, state | trainee.extra_state())
    return best


def _time_progress(options: LoopOptions, elapsed_s: float) -> float:
    if not options.time_limit_min:
        return 0.0
    return elapsed_s / (60.0 * options.time_limit_min)


def run(trainee: Trainee, out: str | Path, options: LoopOptions) -> dict[str, float]:
    """Train until ``options.steps`` or the time budget, validating every ``val_every`` steps
    and at the end; returns the last validation metrics."""
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    at = _start(trainee, out, options)
    began = time.perf_counter() - at.elapsed_s
    tick, tick_step = time.perf_counter(), at.step
    metrics: dict[str, float] = {}
    bar = tqdm(
        total=options.steps, initial=at.step, desc=trainee.name, disable=not options.progress
    )
    with (out / LOG_FILE).open("a", encoding="utf-8") as log_file, bar:

        def write(record: dict[str, Any]) -> None:
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()

        trainee.model.train()
        while at.step < options.steps and _time_progress(options, at.elapsed_s) < 1.0:
            lr = trainee.learning_rate(at.step, _time_progress(options, at.elapsed_s))
            for group in trainee.optimizer.param_groups:
                group["lr"] = lr
            terms = trainee.train_step()
            if not torch.isfinite(terms["loss"]):
                raise EnsembleError(
                    f"Training diverged at step {at.step} (loss is not finite); lower --lr or "
                    "resume from the last checkpoint."
                )
            at.step += 1
            at.elapsed_s = time.perf_counter() - began
            bar.update(1)
            if at.step % options.log_every == 0:
                now = time.perf_counter()
                record = {k: round(float(v), 5) for k, v in terms.items()}
                rate = (at.step - tick_step) / max(now - tick, 1e-9)
                tick, tick_step = now, at.step
                bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{lr:.1e}")
                write({"step": at.step, "split": "train", "lr": lr, "steps_per_s": round(rate, 2),
                       "elapsed_s": round(at.elapsed_s, 1), **record})  # fmt: skip
            if at.step % options.val_every == 0:
                metrics = _validate(trainee, out, at, write)
        if at.step % options.val_every or not metrics:
            metrics = _validate(trainee, out, at, write)
    log.info("%s: %d steps in %.0f s, validation score %.4f → %s", trainee.name, at.step,
             at.elapsed_s, metrics["score"], out)  # fmt: skip
    return metrics


def _validate(trainee: Trainee, out: Path, at: _Progress, write: Any) -> dict[str, float]:
    trainee.model.eval()
    with torch.no_grad():
        metrics = trainee.validate()
    trainee.model.train()
    best = _checkpoint(trainee, out, at, metrics)
    write({"step": at.step, "split": "validation", "best": best,
           **{k: round(v, 5) for k, v in metrics.items()}})  # fmt: skip
    return metrics
