"""Statistics and listen-check of a rendered corpus, read from its feature cache.

Usage: PYTHONPATH=. python bench/corpus.py [--root data/corpus] [--json PATH]

Prints, per instrument: stems, hours, share of frames with a MIDI note (voiced), loudness of
voiced frames (5th/50th/95th percentile, dB A-weighted), and for pitched stems the pitch check:
share of MIDI-voiced frames the tracker also finds voiced, and share of those within 50 cents of
the MIDI f0 (comping stems are chords, so their top-note f0 is not what a monophonic tracker
follows). Also fits loudness = a + b * velocity over voiced frames of monophonic stems: the
mapping `ensemble.data.symbolic` uses to give scores a loudness curve.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

from ensemble.config import FRAME_RATE
from ensemble.data.cache import iter_cached_tracks
from ensemble.data.midi import notes_to_frames, read_midi_notes
from ensemble.features import VOICED_THRESHOLD

POLYPHONIC_PARTS = {"comping"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("data/corpus"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    per: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    kinds: dict[str, int] = defaultdict(int)
    classes: set[str] = set()
    velocity_fit: list[np.ndarray] = []
    for track in iter_cached_tracks(args.root):
        meta = yaml.safe_load((args.root / track.track / "metadata.yaml").read_text())
        kinds[meta["kind"]] += 1
        for stem, s in track.stems.items():
            info = meta["stems"][stem]
            classes.add(info["inst_class"])
            row = per[s["instrument"]]
            gt = s["f0_truth"] > 0
            row["seconds"].append(len(s["f0_truth"]) / FRAME_RATE)
            row["voiced"].append(gt.mean())
            row["loudness"].append(s["loudness_db"][gt] if gt.any() else s["loudness_db"])
            if s["is_drum"] or info["part"] in POLYPHONIC_PARTS:
                continue
            tracked = s["confidence"] >= VOICED_THRESHOLD
            both = gt & tracked
            cents = 1200 * np.abs(np.log2(s["f0_tracked"][both] / s["f0_truth"][both]))
            row["recall"].append(both.sum() / max(gt.sum(), 1))
            row["within50"].append(np.mean(cents < 50) if both.any() else np.nan)
            notes = read_midi_notes(args.root / track.track / "MIDI" / f"{stem}.mid")
            _, velocity = notes_to_frames(notes, len(gt))
            velocity_fit.append(np.stack([velocity[gt], s["loudness_db"][gt]]))

    report: dict[str, dict] = {}
    print(f"tracks by kind: {dict(kinds)}; instrument classes ({len(classes)}): {sorted(classes)}")
    header = (
        f"{'instrument':16s} {'stems':>5s} {'hours':>6s} {'voiced':>6s} {'loud p5/p50/p95':>18s}"
    )
    print(header + f" {'tracked':>7s} {'<50c':>5s}")
    for name in sorted(per, key=lambda k: -sum(per[k]["seconds"])):
        row = per[name]
        loud = np.percentile(np.concatenate(row["loudness"]), [5, 50, 95])
        entry = {
            "stems": len(row["seconds"]),
            "hours": sum(row["seconds"]) / 3600,
            "voiced_share": float(np.mean(row["voiced"])),
            "loudness_p5_p50_p95": [round(float(x), 1) for x in loud],
        }
        line = (
            f"{name:16s} {entry['stems']:5d} {entry['hours']:6.3f} {entry['voiced_share']:6.2f} "
            f"{loud[0]:6.1f}/{loud[1]:5.1f}/{loud[2]:5.1f}"
        )
        if row["recall"]:
            entry["tracker_recall"] = float(np.mean(row["recall"]))
            entry["within_50_cents"] = float(np.nanmean(row["within50"]))
            line += f" {entry['tracker_recall']:7.2f} {entry['within_50_cents']:5.2f}"
        report[name] = entry
        print(line)
    fit = np.concatenate(velocity_fit, axis=1)
    slope, intercept = np.polyfit(fit[0], fit[1], 1)
    print(
        f"loudness ~ {intercept:.1f} dB + {slope:.3f} dB x velocity (voiced frames, {fit.shape[1]})"
    )
    if args.json:
        args.json.write_text(json.dumps({"instruments": report, "kinds": kinds}, indent=1))


if __name__ == "__main__":
    main()
