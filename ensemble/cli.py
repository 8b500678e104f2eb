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


def _command_modules() -> dict[str, str]:
    """Command name -> module name (``continue_cmd`` serves ``continue``, a Python keyword)."""
    return {
        info.name.removesuffix("_cmd"): info.name
        for info in pkgutil.iter_modules(ensemble.commands.__path__)
    }


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The CLI parser; with ``only``, just that command's (a call pays only for the imports of
    the command it runs: `train` alone pulls in torch to describe its options)."""
    parser = _Parser(
        prog="python -m ensemble",
        description="Ensemble: perform an audio seed as a multi-instrument ensemble and extend it "
        "with retrieved, style-matched continuations.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command, name in sorted(_command_modules().items()):
        if only is None or command == only:
            importlib.import_module(f"ensemble.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]
    command = words[0] if words and words[0] in _command_modules() else None
    parser = build_parser(command)
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
