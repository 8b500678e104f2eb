"""One `perform` CLI call as a user pays it: wall time with process start, and peak RSS.

Usage: python bench/cli_perform.py [--checkout DIR ...] [--input FILE] [--trim] [--repeats 3]

Each round runs every checkout once, alternating (so load changes hit all alike), each with its
own `.venv/bin/python -m ensemble perform INPUT --instruments violin,cello,bass,drums`; prints
every run with the 1-minute load average, then the median per checkout. #15's bars: 10 s × 4
instruments <= 3 s on an idle machine; `--trim` on a 30-minute recording < 1 GB.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_once(checkout: Path, audio: Path, trim: bool) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one CLI call from ``checkout``."""
    python = checkout / ".venv" / "bin" / "python"
    with tempfile.TemporaryDirectory() as out:
        command = [str(python), "-m", "ensemble", "perform", str(audio), "--instruments",
                   "violin,cello,bass,drums", "--out", str(Path(out) / "o")]  # fmt: skip
        start = time.perf_counter()
        child = subprocess.Popen([*command, *(["--trim"] if trim else [])], cwd=checkout,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{checkout}: perform failed (status {status})")
    return seconds, usage.ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkout", type=Path, action="append",
                        help="a checkout with its .venv (repeatable; default: this one)")
    parser.add_argument("--input", type=Path, default=ROOT / "examples" / "folk_flute.wav")
    parser.add_argument("--trim", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    checkouts = [c.resolve() for c in args.checkout or [ROOT]]
    runs: dict[Path, list[tuple[float, float]]] = {c: [] for c in checkouts}
    for _ in range(args.repeats):
        for checkout in checkouts:
            load = os.getloadavg()[0]
            seconds, peak = run_once(checkout, args.input.resolve(), args.trim)
            runs[checkout].append((seconds, peak))
            print(f"{checkout.name:12s} {seconds:6.2f} s {peak:7.0f} MB  load {load:.2f}")
    for checkout, results in runs.items():
        wall = statistics.median(s for s, _ in results)
        peak = statistics.median(p for _, p in results)
        print(f"median {checkout.name:12s} {wall:6.2f} s {peak:7.0f} MB")


if __name__ == "__main__":
    main()
