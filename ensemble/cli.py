"""`python -m ensemble`: one CLI whose subcommands live in `ensemble/commands/<name>.py`.

Each command module defines ``register(subparsers)`` which adds its parser(s) and sets
``func=handler`` (``handler(args) -> int``). Modules are discovered, so a new command is one new
file. Heavy imports (torch, librosa) stay inside handlers so `--help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
import warnings
from typing import NoReturn

import ensemble.commands
from ensemble.errors import EnsembleError


class _Parser(argparse.ArgumentParser):
    """Usage mistakes end like every other refusal: one "error: ..." line and exit code 2
    (argparse would print the whole usage first); `--help` still shows it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m ensemble",
        description="Ensemble: perform an audio seed as a multi-instrument ensemble and extend it "
        "with retrieved, style-matched continuations.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(ensemble.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"ensemble.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, already printed)
        return int(exc.code or 0)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s: %(message)s"
    )
    warnings.simplefilter("default")
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except EnsembleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
