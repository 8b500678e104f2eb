"""Feature-extraction throughput (× real time) vs librosa.pyin, measured in the same run.

Usage: python bench/features.py [--seconds 10] [--repeats 5]
Signal: a violin-like phrase with vibrato (10 s, 16 kHz). Prints the ratios the issue asks for:
extract_features × real time (goal >= 200) and its speed-up over pyin (goal >= 50).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from _timing import timed

from ensemble.config import HOP_LENGTH, SAMPLE_RATE
from ensemble.features import extract_features, track_pitch


def violin_phrase(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    notes = 440.0 * 2 ** (np.array([0, 2, 4, 5, 7, 5, 4, 2]) / 12)
    f0 = notes[(t * 2).astype(int) % len(notes)] * (1 + 0.004 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    return (sum(0.3 / k * np.sin(k * phase) for k in range(1, 8))).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import librosa

    audio = violin_phrase(args.seconds)
    pyin = lambda: librosa.pyin(  # noqa: E731
        audio, fmin=65.0, fmax=2093.0, sr=SAMPLE_RATE, hop_length=HOP_LENGTH
    )
    timings = {
        "extract_features (SwiftF0 + loudness + RMS + chroma)": timed(
            lambda: extract_features(audio), args.repeats
        ),
        "track_pitch (SwiftF0 only)": timed(lambda: track_pitch(audio), args.repeats),
        "librosa.yin (no voicing)": timed(
            lambda: librosa.yin(
                audio, fmin=65.0, fmax=2093.0, sr=SAMPLE_RATE, hop_length=HOP_LENGTH
            ),
            args.repeats,
        ),
        "librosa.pyin hop 10 ms (baseline)": timed(pyin, max(1, args.repeats // 2)),
    }
    rows = {name: seconds for name, (seconds, _) in timings.items()}
    baseline = rows["librosa.pyin hop 10 ms (baseline)"]
    print(f"{args.seconds:g} s of audio at {SAMPLE_RATE} Hz, best of {args.repeats}")
    print(f"{'method':55s} {'seconds':>8s} {'x real time':>12s} {'x pyin':>8s}")
    report = {}
    for name, seconds in rows.items():
        rt, vs = args.seconds / seconds, baseline / seconds
        report[name] = {"seconds": seconds, "x_realtime": rt, "x_pyin": vs}
        print(f"{name:55s} {seconds:8.4f} {rt:12.1f} {vs:8.1f}")
    print(json.dumps({"features": report}))


if __name__ == "__main__":
    main()
