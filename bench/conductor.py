"""The conductor against simple baselines on held-out tracks, plus its speed and size.

Usage: python bench/conductor.py [--data data/corpus] [--split test]
                                 [--checkpoint checkpoints/conductor] [--json PATH]

Every follower stem of every track in the split (instruments the conductor knows) is played from
the leader stem's tracked features and compared with the stem's score and loudness. Baselines,
computed in the same run on the same stems:
  (a) copy-leader: each follower's loudness is the leader's loudness;
  (b) mean-loudness: each follower's mean loudness over the training data (from config.json);
  (c) transposed-leader: the leader's notes and voicing, moved by whole octaves to the follower's
      mean training pitch;
  (d) beat-grid: drum onsets on a fixed grid at the leader's tempo (autocorrelation of its onset
      strength, 60-180 BPM) and best-fitting phase.
Metrics: loudness L1 (dB) and Pearson correlation of loudness curves (both floored at -80 dB,
inaudible below), pitch-class accuracy on frames where the follower plays (a frame counts when
the prediction is voiced with the right pitch class), frame voicing F1, and drum onset F1 with
+-50 ms tolerance (onsets found by `detect_onsets` on loudness curves, one-to-one greedy matching
of the closest pairs). Speed: conducting 10 s of leader for 4 followers on this CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from _timing import timed

from ensemble.accompaniment import QUIET_DB, FollowerPart
from ensemble.conductor import DEFAULT_CHECKPOINT, Conductor, detect_onsets, onset_strength
from ensemble.config import FRAME_RATE
from ensemble.errors import EnsembleError
from ensemble.features import FeatureFrame, hz_to_midi
from ensemble.training.conductor import ConductorTrack, tracks_from_cache

TOLERANCE = int(0.05 * FRAME_RATE)  # +-50 ms in frames
HIGHER_IS_BETTER = {"loudness_corr", "pitch_class_acc", "voicing_f1", "onset_f1"}


def match_onsets(reference: np.ndarray, estimate: np.ndarray, tolerance: int) -> int:
    """Number of one-to-one matches within `tolerance` frames, closest pairs first (greedy)."""
    if len(reference) == 0 or len(estimate) == 0:
        return 0
    dist = np.abs(reference[:, None] - estimate[None, :])
    pairs = np.argwhere(dist <= tolerance)
    order = np.argsort(dist[pairs[:, 0], pairs[:, 1]], kind="stable")
    used_ref, used_est = set(), set()
    for r, e in pairs[order]:
        if r not in used_ref and e not in used_est:
            used_ref.add(r)
            used_est.add(e)
    return len(used_ref)


def grid_onsets(leader: FeatureFrame) -> np.ndarray:
    """Baseline (d): a beat grid at the leader's tempo and phase."""
    import torch

    strength = onset_strength(torch.from_numpy(np.maximum(leader.loudness_db, QUIET_DB))).numpy()
    strength = strength - strength.mean()
    n = len(strength)
    lags = np.arange(FRAME_RATE * 60 // 180, FRAME_RATE * 60 // 60 + 1)  # 60..180 BPM
    lags = lags[lags < n]
    if len(lags) == 0:
        return np.zeros(0, np.int64)
    auto = np.array([np.dot(strength[:-lag], strength[lag:]) / (n - lag) for lag in lags])
    # Log-normal tempo prior around 120 BPM (as beat trackers use) so the grid lands on the beat
    # rather than on the bar, which repeats just as strongly.
    bpm = 60.0 * FRAME_RATE / lags
    auto = auto * np.exp(-0.5 * np.log2(bpm / 120.0) ** 2)
    period = int(lags[np.argmax(auto)])
    phase = int(np.argmax([strength[p::period].sum() for p in range(period)]))
    return np.arange(phase, n, period)


class Tally:
    """Accumulates one system's metrics over follower stems."""

    def __init__(self) -> None:
        self.l1_sum = self.frames = 0.0
        self.corrs: list[float] = []
        self.pc_hits = self.pc_frames = 0.0
        self.tp = self.fp = self.fn = 0.0
        self.on_tp = self.on_ref = self.on_est = 0.0

    def loudness(self, pred: np.ndarray, truth: np.ndarray) -> None:
        pred, truth = np.maximum(pred, QUIET_DB), np.maximum(truth, QUIET_DB)
        self.l1_sum += float(np.abs(pred - truth).sum())
        self.frames += len(truth)
        ok = pred.std() > 1e-6 and truth.std() > 1e-6
        self.corrs.append(float(np.corrcoef(pred, truth)[0, 1]) if ok else 0.0)

    def pitch(self, pred_midi: np.ndarray, pred_voiced: np.ndarray, truth_midi: np.ndarray) -> None:
        ref = truth_midi > 0
        same = np.round(pred_midi).astype(int) % 12 == np.round(truth_midi).astype(int) % 12
        self.pc_hits += float((ref & pred_voiced & same).sum())
        self.pc_frames += float(ref.sum())
        self.tp += float((ref & pred_voiced).sum())
        self.fp += float((~ref & pred_voiced).sum())
        self.fn += float((ref & ~pred_voiced).sum())

    def onsets(self, pred: np.ndarray, truth: np.ndarray) -> None:
        self.on_tp += match_onsets(truth, pred, TOLERANCE)
        self.on_ref += len(truth)
        self.on_est += len(pred)

    def result(self) -> dict[str, float | None]:
        def f1(tp: float, n_est: float, n_ref: float) -> float | None:
            return 2 * tp / (n_est + n_ref) if n_est + n_ref > 0 else None

        return {
            "loudness_l1_db": self.l1_sum / self.frames if self.frames else None,
            "loudness_corr": float(np.mean(self.corrs)) if self.corrs else None,
            "pitch_class_acc": self.pc_hits / self.pc_frames if self.pc_frames else None,
            "voicing_f1": f1(self.tp, self.tp + self.fp, self.tp + self.fn)
            if self.pc_frames
            else None,
            "onset_f1": f1(self.on_tp, self.on_est, self.on_ref) if self.on_ref else None,
        }


def evaluate(conductor: Conductor, tracks: list[ConductorTrack]) -> dict[str, dict]:
    """Metrics of the conductor and the four baselines over every known follower stem."""
    info = {i.name: i for i in conductor.config.instruments}
    systems = {
        name: Tally()
        for name in ("conductor", "copy-leader", "mean-loudness", "transposed-leader", "beat-grid")
    }
    n_stems = 0
    for track in tracks:
        stems = [s for s in track.followers if s.instrument in info]
        if not stems:
            continue
        lead = track.leader
        parts: dict[str, FollowerPart] = conductor.conduct(
            lead, sorted({s.instrument for s in stems}), messages=[]
        )
        lead_midi = hz_to_midi(lead.f0_hz)
        lead_voiced = lead.voiced & (lead.f0_hz > 0)
        lead_mean = float(lead_midi[lead_voiced].mean()) if lead_voiced.any() else 0.0
        grid = grid_onsets(lead)
        for stem in stems:
            n_stems += 1
            part, stats = parts[stem.instrument], info[stem.instrument]
            truth_loud = stem.loudness_db[: lead.n_frames]
            systems["conductor"].loudness(part.loudness_db, truth_loud)
            systems["copy-leader"].loudness(lead.loudness_db, truth_loud)
            systems["mean-loudness"].loudness(
                np.full(lead.n_frames, stats.loudness_mean_db), truth_loud
            )
            if stem.is_drum:
                truth_onsets = detect_onsets(truth_loud)
                systems["conductor"].onsets(detect_onsets(part.loudness_db), truth_onsets)
                systems["beat-grid"].onsets(grid, truth_onsets)
                continue
            truth_midi = stem.midi[: lead.n_frames]
            systems["conductor"].pitch(hz_to_midi(part.f0_hz), part.voiced, truth_midi)
            shift = 12 * round((stats.pitch_midi_mean - lead_mean) / 12) if lead_mean else 0
            systems["transposed-leader"].pitch(lead_midi + shift, lead_voiced, truth_midi)
    return {"stems": n_stems, **{k: v.result() for k, v in systems.items()}}


def margins(results: dict[str, dict]) -> dict[str, float | None]:
    """Conductor minus the best baseline per metric (positive = conductor better)."""
    out: dict[str, float | None] = {}
    for metric, model_value in results["conductor"].items():
        baselines = [
            r[metric]
            for name, r in results.items()
            if name not in ("conductor", "stems") and r[metric] is not None
        ]
        if model_value is None or not baselines:
            out[metric] = None
            continue
        if metric in HIGHER_IS_BETTER:
            out[metric] = model_value - max(baselines)
        else:
            out[metric] = min(baselines) - model_value
    return out


def speed(conductor: Conductor, tracks: list[ConductorTrack], repeats: int = 5) -> dict:
    """Seconds to conduct 10 s of leader for 4 followers (best of `repeats` after a warm-up)."""
    names = conductor.instruments[:4]
    leader = next((t.leader for t in tracks if t.leader.n_frames >= 10 * FRAME_RATE), None)
    if leader is None:
        raise EnsembleError("No test track is 10 s long, so the speed cannot be measured.")
    leader = leader.slice(0, 10 * FRAME_RATE)
    seconds, _ = timed(lambda: conductor.conduct(leader, names, messages=[]), repeats)
    return {"followers": names, "seconds_for_10s": seconds}


def print_table(results: dict[str, dict], gains: dict[str, float | None]) -> None:
    metrics = list(results["conductor"])
    print(f"{'system':<18}" + "".join(f"{m:>17}" for m in metrics))
    for name, row in results.items():
        if name == "stems":
            continue
        cells = ["—" if row[m] is None else f"{row[m]:.3f}" for m in metrics]
        print(f"{name:<18}" + "".join(f"{c:>17}" for c in cells))
    cells = ["—" if gains[m] is None else f"{gains[m]:+.3f}" for m in metrics]
    print(f"{'margin vs best':<18}" + "".join(f"{c:>17}" for c in cells))


def piece_of(root: Path, track: str) -> str:
    """The source piece (movements of one work share it) of a rendered track."""
    import yaml

    return str(yaml.safe_load((root / track / "metadata.yaml").read_text())["group"])


def trained_pieces(root: Path) -> set[str]:
    splits = json.loads((root / "splits.json").read_text())
    return {piece_of(root, t) for t in splits["train"] + splits["validation"]}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data", default="data/corpus", help="corpus root (splits.json, cache/)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--checkpoint", default=None, help="conductor folder (default: shipped)")
    parser.add_argument("--json", default="artifacts/bench/conductor.json")
    parser.add_argument(
        "--exclude-pieces-of",
        metavar="CORPUS",
        help="drop tracks whose source piece is in CORPUS's train/validation split (the corpus "
        "the checkpoint was trained on), so no evaluated piece was heard in training",
    )
    args = parser.parse_args()
    try:
        conductor = Conductor.from_pretrained(args.checkpoint)
        tracks = tracks_from_cache(Path(args.data), args.split)
    except EnsembleError as exc:
        print(f"conductor bench skipped: {exc}", file=sys.stderr)
        return 0
    if args.exclude_pieces_of:
        seen = trained_pieces(Path(args.exclude_pieces_of))
        kept = [t for t in tracks if piece_of(Path(args.data), t.name) not in seen]
        print(
            f"{len(tracks) - len(kept)} of {len(tracks)} tracks share a piece with "
            f"{args.exclude_pieces_of}'s training data and are left out"
        )
        tracks = kept
    if not tracks:
        print(f"conductor bench skipped: no {args.split} tracks in {args.data}", file=sys.stderr)
        return 0
    results = evaluate(conductor, tracks)
    gains = margins(results)
    timing = speed(conductor, tracks)
    weights = Path(args.checkpoint or DEFAULT_CHECKPOINT)
    weights = weights.parent if weights.is_file() else weights
    size_mb = (weights / "model.safetensors").stat().st_size / 1e6
    print(f"{len(tracks)} {args.split} tracks, {results['stems']} follower stems")
    print_table(results, gains)
    print(
        f"speed: {timing['seconds_for_10s']:.3f} s for 10 s of leader, followers "
        f"{', '.join(timing['followers'])}; checkpoint {size_mb:.1f} MB"
    )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "split": args.split,
                "tracks": len(tracks),
                "results": results,
                "margin_vs_best_baseline": gains,
                "speed": timing,
                "checkpoint_mb": size_mb,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
