"""`python -m ensemble ratings export|fit|stats`: look at and learn from collected judgements."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ensemble.outputs import check_file


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("ratings", help="export listener ratings or learn ranker weights")
    inner = parser.add_subparsers(dest="ratings_command", metavar="ACTION", required=True)

    export = inner.add_parser("export", help="write all judgements as CSV or JSONL")
    export.add_argument("--db", required=True, help="ratings database (SQLite)")
    export.add_argument("--format", choices=["csv", "jsonl"], default="jsonl")
    export.add_argument("--out", help="output file (default: standard output)")
    export.add_argument("--force", action="store_true", help="replace --out if it exists")
    export.set_defaults(func=_export)

    fit = inner.add_parser("fit", help="learn composite weights from judgements (Bradley–Terry)")
    fit.add_argument("--db", required=True, help="ratings database (SQLite)")
    fit.add_argument(
        "--out",
        default="data/ratings_weights.json",
        help="weights file to write (default data/ratings_weights.json, which the app reads)",
    )
    fit.add_argument("--old-weights", metavar="PATH",
                     help="weights to compare against (default: those the judgements were "
                     "ranked with, else equal)")
    fit.add_argument("--parts", help="comma-separated score parts to weight (default: the old "
                     "weights' parts)")
    fit.add_argument("--holdout", type=float, default=0.25,
                     help="fraction of judgements held out for evaluation")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--l2", type=float, default=1.0, help="L2 regularisation strength")
    fit.add_argument("--min-judgements", type=int, default=None, metavar="N",
                     help="write the weights file (which the app applies) only when at least N "
                     "judgements were fitted (default 30)")
    fit.add_argument("--include-flagged", action="store_true",
                     help="also fit judgements the room flagged (listen gate failed, heard "
                     "before, too fast, duplicate, rate limited)")
    fit.add_argument("--resamples", type=int, default=200,
                     help="bootstrap refits for the weights' 95%% intervals")
    fit.set_defaults(func=_fit)

    stats = inner.add_parser("stats", help="how many judgements, sessions and listens")
    stats.add_argument("--db", required=True, help="ratings database (SQLite)")
    stats.set_defaults(func=_stats)


def _export(args: argparse.Namespace) -> int:
    from ensemble.ratings import RatingsStore

    if args.out:
        check_file(args.out, force=args.force)
    store = RatingsStore(args.db, readonly=True)
    try:
        n = store.export(args.format, args.out or sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:
        # `export | head`: the reader stopped early, which is not an error. Point stdout at
        # devnull so the interpreter's final flush does not complain (Python docs' recipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if args.out:
        print(f"wrote {n} judgements to {args.out}", file=sys.stderr)
    return 0


def _fit(args: argparse.Namespace) -> int:
    from ensemble.ratings import RatingsStore, fit_weights, load_weights, save_weights
    from ensemble.ratings.fit import MIN_JUDGEMENTS, with_keeps

    check_file(args.out, force=True)  # the stated rule: fit replaces its weights file
    store = RatingsStore(args.db, readonly=True)
    old = load_weights(args.old_weights) if args.old_weights else None
    parts = [p.strip() for p in args.parts.split(",") if p.strip()] if args.parts else None
    judgements = with_keeps(store.judgements(), store.keeps())  # keeping is a preference too
    result = fit_weights(judgements, old_weights=old, parts=parts, holdout=args.holdout,
                 seed=args.seed, l2=args.l2, include_flagged=args.include_flagged,
                 resamples=args.resamples)
    print(_weights_report(result))
    print(_fit_report(result.metrics))
    minimum = MIN_JUDGEMENTS if args.min_judgements is None else args.min_judgements
    if result.fitted_on < minimum:
        print(f"not applied: {result.fitted_on} judgements fitted, the minimum is {minimum} "
              f"(--min-judgements); {args.out} was left as it was")
        return 0
    save_weights(result, args.out)
    print(f"saved weights fitted on {result.fitted_on} judgements to {args.out}")
    return 0


def _weights_report(result: Any) -> str:
    lines = [f"{'part':<24}{'old':>10}{'new':>10}   95% interval (bootstrap)"]
    for p, w in result.weights.items():
        lo, hi = result.intervals[p]
        lines.append(f"{p:<24}{result.old_weights[p]:>10.4f}{w:>10.4f}   [{lo:.4f}, {hi:.4f}]")
    lines.append(f"fitted on {result.fitted_on} judgements; tie strength (Davidson ν) "
                 f"{result.tie_strength:.3f}")
    if result.excluded:
        left = ", ".join(f"{n} {flag.replace('_', ' ')}" for flag, n in result.excluded.items())
        lines.append(f"left out as flagged: {left} (--include-flagged to use them)")
    return "\n".join(lines)


def _fit_report(m: dict[str, Any]) -> str:
    lines = []
    if m["skipped"]:
        lines.append(f"({m['skipped']} judgements skipped: fewer than 2 candidates, no "
                     "preference, or missing parts)")
    for split in ("train", "held_out"):
        if split not in m:
            continue
        s = m[split]
        lines.append(f"\n{split.replace('_', '-')}: {s['judgements']} judgements, "
                     f"{s['pairs']} ranked pairs")
        for metric, label in (("pairwise_accuracy", "pairwise accuracy"),
                              ("kendall_tau", "mean Kendall tau")):
            row = f"  {label:<19}"
            for side in ("old", "new", "gain"):
                sign = "+" if side == "gain" else ""
                row += f"  {side} {s[side][metric]:{sign}.3f}"
                if f"{metric}_ci95" in s[side]:
                    lo, hi = s[side][f"{metric}_ci95"]
                    row += f" [{lo:{sign}.3f}, {hi:{sign}.3f}]"
            lines.append(row)
    if "held_out" not in m:
        lines.append("no held-out judgements (holdout 0): the numbers above are on training data")
    return "\n".join(lines)


def _stats(args: argparse.Namespace) -> int:
    from ensemble.ratings import RatingsStore
    from ensemble.ratings.judgement import RATE_LIMIT_PER_HOUR

    s = RatingsStore(args.db, readonly=True).stats()
    print(f"judgements     {s['judgements']} ({s['with_ranking']} ranked, {s['with_ratings']} "
          f"rated 1-5, {s['best_only']} best-only)")
    verdicts = ", ".join(f"{n} {v.replace('_', ' ')}" for v, n in sorted(s["verdicts"].items()))
    if verdicts:
        print(f"verdicts       {verdicts}")
    print(f"flagged        {s['flagged']} (left out of `ratings fit` by default)")
    b = s["by_flag"]
    print(f"  gate failed  {s['gate_failed']} (audio not fetched {b['not_fetched']}, candidates "
          f"overlapping {b['overlap']})")
    for flag in ("heard_before", "too_fast", "duplicate"):
        print(f"  {flag.replace('_', ' '):<12} {b[flag]}")
    print(f"  rate limited {b['rate_limited']} (beyond {RATE_LIMIT_PER_HOUR} judgements per "
          "listener per hour)")
    print(f"sessions       {s['sessions']}")
    print(f"listeners      {s['listeners']} (most judgements by one listener: "
          f"{s['max_per_listener']})")
    if s["judgements"]:
        print(f"from           {s['first']} to {s['last']}")
    print(f"listen events  {s['listen_events']} ({s['listened_seconds']:.0f} s played)")
    print(f"kept for songs {s['keeps']} candidate(s)")
    return 0
