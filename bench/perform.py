"""Whole perform path speed: 10 s input, 4 instruments, features → conductor → decoders → mix.

Usage: python bench/perform.py [--input FILE] [--instruments violin,cello,bass,drums] [--repeats 3]
Prints × real time for the path (goal >= 20) and the song-metrics time with pYIN (goal <= 2 s),
plus a per-stage breakdown. Uses the shipped checkpoints/.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from _timing import timed

from ensemble.audio import load_audio
from ensemble.config import SAMPLE_RATE
from ensemble.features import extract_features
from ensemble.perform import Ensemble


def phrase(seconds: float) -> np.ndarray:
    """A violin-like folk phrase with vibrato and note-level dynamics (a stand-in recording)."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    notes = 392.0 * 2 ** (np.array([0, 2, 4, 5, 7, 9, 7, 4, 2, 0, -3, 0]) / 12)
    idx = (t / 0.42).astype(int)
    f0 = notes[idx % len(notes)] * (1 + 0.005 * np.sin(2 * np.pi * 5.5 * t))
    env = 0.3 + 0.7 * np.exp(-((t % 0.42) / 0.25))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    return (env * sum(0.3 / k * np.sin(k * phase) for k in range(1, 8))).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input", help="audio file (default: a synthetic 10 s phrase)")
    parser.add_argument("--instruments", default="violin,cello,bass,drums")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    audio = load_audio(args.input)[: 10 * SAMPLE_RATE] if args.input else phrase(10.0)
    seconds = len(audio) / SAMPLE_RATE
    names = args.instruments.split(",")
    ensemble = Ensemble.from_pretrained()

    t_feat, features = timed(lambda: extract_features(audio), args.repeats)
    t_path, perf = timed(lambda: ensemble.perform(audio, names), args.repeats)
    t_perf_only, _ = timed(lambda: ensemble.perform(audio, names, features=features), args.repeats)
    leader = ensemble.perform(audio, names[:1], features=features)
    t_conduct, _ = timed(
        lambda: ensemble.conductor.conduct(leader.features, names[1:]), args.repeats
    )
    t_metrics, _ = timed(perf.metrics, max(1, args.repeats - 1))
    report = {
        "input_seconds": seconds,
        "instruments": names,
        "features_s": t_feat,
        "conductor_s": t_conduct,
        "decoders_and_mix_s": t_perf_only - t_conduct,
        "whole_path_s": t_path,
        "whole_path_x_realtime": seconds / t_path,
        "metrics_s": t_metrics,
        "path_plus_metrics_s": t_path + t_metrics,
    }
    print(f"{seconds:g} s input, {len(names)} instruments ({', '.join(names)})")
    for key in ("features_s", "conductor_s", "decoders_and_mix_s", "whole_path_s", "metrics_s"):
        print(f"  {key:22s} {report[key]:.3f}")
    print(
        f"  whole path: {report['whole_path_x_realtime']:.1f}x real time (goal >= 20); "
        f"metrics (pYIN on input, mix, {len(names)} stems): {t_metrics:.2f} s (goal <= 2)"
    )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
