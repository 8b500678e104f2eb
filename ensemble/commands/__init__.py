"""CLI subcommands, one module per top-level command (see ensemble.cli), and what several of
them share: reading every input first, and naming one output folder per input."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def output_names(inputs: list[Path]) -> list[str]:
    """One sub-folder name per input (its file name, numbered when two share one); "" for a
    single input, whose results go straight into --out as before."""
    if len(inputs) == 1:
        return [""]
    names: list[str] = []
    for path in inputs:
        name, n = path.stem, 1
        while name in names:
            n += 1
            name = f"{path.stem}~{n}"
        names.append(name)
    return names


def load_inputs(inputs: list[Path], trim: bool = False) -> list[np.ndarray]:
    """Every input loaded and checked before any model is, printing their warnings."""
    from ensemble.audio import load_audio

    loaded = []
    for path in inputs:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded.append(load_audio(path, trim=trim))
        for w in caught:
            print(f"warning: {w.message}")
    return loaded


def add_seconds_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """The shared ``--seconds`` option: how long each continuation (``what``) lasts."""
    from ensemble.limits import CONTINUATION_SECONDS, DEFAULT_CONTINUATION_SECONDS

    parser.add_argument(
        "--seconds",
        type=CONTINUATION_SECONDS.arg(float),
        default=DEFAULT_CONTINUATION_SECONDS,
        metavar="S",
        help=f"length of each {what}, {CONTINUATION_SECONDS.describe()} s (default "
        f"{DEFAULT_CONTINUATION_SECONDS:g}); seams land on the beat",
    )
