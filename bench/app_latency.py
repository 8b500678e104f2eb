"""Listening-room latency over HTTP: 10 s upload → performance + Top-5 rendered continuations.

Usage: python bench/app_latency.py [--rounds 4] [--port 7912]
Starts `python app.py` with the shipped checkpoints and examples/index (ratings go to a temporary
database), drives it with gradio_client like a browser would, and prints per-round wall times for
the first step (performance + blind candidates with their plots) and the second (performance
metrics), with their medians. Goal: first step < 5 s on the 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from gradio_client import Client, handle_file

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--port", type=int, default=7912)
    parser.add_argument("--input", default=str(ROOT / "examples" / "folk_flute.wav"))
    args = parser.parse_args()
    url = f"http://127.0.0.1:{args.port}/"
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "ENSEMBLE_RATINGS_DB": f"{tmp}/ratings.sqlite",
            "GRADIO_SERVER_PORT": str(args.port),
            "GRADIO_SERVER_NAME": "127.0.0.1",
            "GRADIO_ANALYTICS_ENABLED": "False",
        }
        app = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py")],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        try:
            for _ in range(300):
                try:
                    urllib.request.urlopen(url, timeout=2)
                    break
                except OSError:
                    time.sleep(1)
            client = Client(url, verbose=False, download_files=False)
            walls = []
            for _ in range(args.rounds):
                start = time.perf_counter()
                out = client.predict(
                    handle_file(args.input),
                    "violin",
                    ["bass", "cello", "drums"],
                    5,
                    1,
                    1.0,
                    0.15,
                    0.15,
                    0.1,
                    0.1,
                    True,
                    0,
                    0,
                    0,
                    -60,
                    False,
                    api_name="/perform",
                )
                first = time.perf_counter()
                client.predict(api_name="/analyse")
                walls.append((first - start, time.perf_counter() - first))
                print(
                    f"performance + Top-5 with plots {walls[-1][0]:.2f} s; performance metrics "
                    f"{walls[-1][1]:.2f} s; server: {out[1].splitlines()[0]}",
                    flush=True,
                )
            median = np.median(np.array(walls), axis=0)
            print(
                f"median: {median[0]:.2f} s to listen (goal < 5), metrics {median[1]:.2f} s later"
            )
        finally:
            app.kill()
            app.wait()


if __name__ == "__main__":
    main()
