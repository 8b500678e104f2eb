"""The one set of limits on user-chosen numbers, shared by the CLI, the app and the library.

Each limit is a closed range with the option name users know it by, so every refusal says what
is allowed. The caps bound work and memory: Top-K and hops multiply rendering time, and a config
field such as a reverb length or a decoder width sizes a tensor.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from ensemble.errors import EnsembleError


@dataclass(frozen=True)
class Range:
    """Allowed values ``low <= x <= high`` of one option (finite numbers only)."""

    option: str
    low: float
    high: float

    def describe(self) -> str:
        return f"between {self.low:g} and {self.high:g}"

    def check(
        self, value: float, option: str | None = None, error: type[EnsembleError] = EnsembleError
    ) -> float:
        """``value`` when finite and in range, else ``error`` naming the allowed range."""
        name = option or self.option
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise error(f"{name} must be a number {self.describe()}, not {value!r}.") from None
        if not math.isfinite(number) or not self.low <= number <= self.high:
            raise error(f"{name} must be {self.describe()}, not {value!r}.")
        return value

    def arg(self, kind: type[int] | type[float] = float) -> Callable[[str], float]:
        """An argparse ``type=`` that parses ``kind`` and checks the range at parse time."""

        def parse(text: str) -> float:
            try:
                value = kind(text)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"'{text}' is not a{'n integer' if kind is int else ' number'}; give one "
                    f"{self.describe()}"
                ) from None
            try:
                return self.check(value)
            except EnsembleError:
                raise argparse.ArgumentTypeError(
                    f"'{text}' is out of range; give a number {self.describe()}"
                ) from None

        return parse


# Continuations (CLI `continue` and the listening room).
TOP_K = Range("Top-K", 1, 8)  # each one is rendered and must be listened to
DEFAULT_TOP_K = 5
HOPS = Range("Hops", 1, 4)  # a 4-hop chain is 16 s of retrieved audio; more costs minutes
RERANK = Range("Candidates (--candidates)", 1, 5000)  # stage-1 candidates scored exactly
# Length of a continuation after the input's ending (`continue --seconds`, `song grow`): at
# least one chunk, at most what a listener compares.
CONTINUATION_SECONDS = Range("--seconds", 4, 30)
DEFAULT_CONTINUATION_SECONDS = 8.0
SECTIONS = Range("--sections", 1, 12)  # kept continuations of one `song grow`

# Performance controls (CLI `perform`).
AUTOTUNE = Range("--autotune", 0, 1)
OCTAVES = Range("--octave-shift", -4, 4)
SEMITONES = Range("--semitones", -48, 48)
GAIN_DB = Range("gain in dB", -120, 40)
QUIET_DB = Range("--quiet-threshold", -120, 0)

# Index building (also checked when an index is opened).
CHUNK_SECONDS = Range("--chunk-seconds", 0.5, 60)
HOP_SECONDS = Range("--hop-seconds", 0.01, 60)
LOOKBACK_SECONDS = Range("lookback", 0.01, 60)

WORKERS = Range("--workers", 1, 1024)

# Training.
LEARNING_RATE = Range("--lr", 1e-7, 1.0)
STEPS = Range("--steps", 1, 10_000_000)
BATCH_SIZE = Range("--batch-size", 1, 4096)
EXCERPT_SECONDS = Range("--seconds", 0.1, 60)
MINUTES = Range("minutes", 0.01, 100_000)
HIDDEN_SIZE = Range("hidden_size", 1, 2048)
THREADS = Range("--threads", 1, 1024)

# Corpus rendering.
TRACK_SECONDS = Range("--max-seconds", 4, 3600)

# Decoder configs: sizes that allocate tensors (a width of 200000 is a 160 GB GRU).
DECODER_LIMITS: Mapping[str, Range] = {
    "sample_rate": Range("sample_rate", 4000, 192_000),
    "hop_length": Range("hop_length", 1, 4096),
    "hidden_size": HIDDEN_SIZE,
    "gru_layers": Range("gru_layers", 1, 16),
    "mlp_layers": Range("mlp_layers", 1, 16),
    "n_harmonics": Range("n_harmonics", 1, 512),
    "n_noise_bands": Range("n_noise_bands", 1, 1024),
    "conv_kernel": Range("conv_kernel", 1, 64),
    "n_tonal": Range("n_tonal", 0, 256),
    "n_one_shots": Range("n_one_shots", 0, 256),
    "one_shot_seconds": Range("one_shot_seconds", 0.001, 5),
    "strikes_per_frame": Range("strikes_per_frame", 1, 64),
    "reverb_seconds": Range("reverb_seconds", 0.001, 10),
    "band_split_hz": Range("band_split_hz", 0, 96_000),
}
CONV_DILATION = Range("conv_dilations", 1, 1024)
CONV_BLOCKS = Range("number of conv_dilations", 1, 64)
FREQUENCY_HZ = Range("tonal_range_hz", 1, 96_000)
LOUDNESS_DB = Range("loudness_range_db", -200, 50)

# Conductor configs.
CONDUCTOR_LIMITS: Mapping[str, Range] = {
    "d_model": Range("d_model", 8, 4096),
    "n_heads": Range("n_heads", 1, 64),
    "encoder_layers": Range("encoder_layers", 1, 48),
    "follower_layers": Range("follower_layers", 1, 48),
    "ff_mult": Range("ff_mult", 1, 16),
    "frame_dim": Range("frame_dim", 1, 4096),
    "dropout": Range("dropout", 0, 0.99),
    "window_frames": Range("window_frames", 16, 100_000),
    "overlap_frames": Range("overlap_frames", 0, 50_000),
}


def all_finite(arrays: Iterable[np.ndarray]) -> bool:
    """Whether every value of every array is finite (checkpoint weights before loading: numpy
    checks a float16 state dict in milliseconds where torch.isfinite takes seconds on CPU)."""
    return all(bool(np.isfinite(a).all()) for a in arrays)


def check_all(
    values: Mapping[str, object],
    limits: Mapping[str, Range],
    where: str,
    error: type[EnsembleError] = EnsembleError,
) -> None:
    """Range-check every field of ``values`` that has a limit; the message names ``where``."""
    for name, limit in limits.items():
        if name in values:
            limit.check(values[name], f"{name} in {where}", error)  # type: ignore[arg-type]


def check_continue(
    top_k: int, hops: int, weights: Mapping[str, float], candidates: int = 1
) -> None:
    """The continuation options of the CLI, the app and `continue_audio`, checked the same way
    (``weights`` already parsed, so finite)."""
    TOP_K.check(top_k)
    HOPS.check(hops)
    RERANK.check(candidates)
    if not any(abs(float(v)) > 0 for v in weights.values()):
        raise EnsembleError(
            "At least one score weight must be non-zero, else every continuation scores 0."
        )
