"""`python -m ensemble train <what>`: one sub-subcommand per module in `ensemble.training`."""

from __future__ import annotations

import argparse
import importlib
import pkgutil

import ensemble.training


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train an instrument decoder or the conductor")
    inner = parser.add_subparsers(dest="what", metavar="WHAT", required=True)
    for info in sorted(pkgutil.iter_modules(ensemble.training.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"ensemble.training.{info.name}")
        if hasattr(module, "register"):
            module.register(inner)
