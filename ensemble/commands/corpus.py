"""`python -m ensemble corpus render|cache`: build the multitrack training corpus and its
feature cache."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ensemble.config import AUDIO_RATES, SAMPLE_RATE
from ensemble.corpus import DEFAULT_SOUNDFONT
from ensemble.errors import DataError
from ensemble.limits import TRACK_SECONDS
from ensemble.outputs import check_writable


def _at_least_one(value: int | None, option: str) -> None:
    # checked here rather than by argparse so the CLI answers with one "error: ..." line
    if value is not None and value < 1:
        raise DataError(f"{option} must be at least 1 (got {value}).")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("corpus", help="render the multitrack corpus and cache its features")
    inner = parser.add_subparsers(dest="corpus_command", metavar="ACTION", required=True)
    for add in (_add_render, _add_cache, _add_pack, _add_unpack):
        add(inner)


def _add_render(inner: argparse._SubParsersAction) -> None:
    render = inner.add_parser(
        "render",
        help="render scores from music21's corpus into Slakh-layout stems with FluidSynth",
        description="Render Bach chorales, string quartets and folk tunes (arranged for a band "
        "with drums) into TrackNNNNN folders: per-stem FLAC, MIDI and f0, mix.flac, "
        "metadata.yaml, and splits.json.",
    )
    render.add_argument("--out", type=Path, required=True, help="output folder")
    render.add_argument(
        "--max-pieces", type=int, default=None,
        help="number of tracks (default: every usable piece, about 860)",
    )  # fmt: skip
    render.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    render.add_argument(
        "--soundfont", type=Path, default=DEFAULT_SOUNDFONT,
        help=f"General MIDI soundfont (default {DEFAULT_SOUNDFONT})",
    )  # fmt: skip
    render.add_argument("--workers", type=int, default=2, help="parallel renders")
    render.add_argument(
        "--max-seconds",
        type=TRACK_SECONDS.arg(),
        default=60.0,
        help=f"longest track in seconds, {TRACK_SECONDS.describe()} (default 60)",
    )
    render.add_argument(
        "--sample-rate", type=int, default=SAMPLE_RATE,
        help=f"Hz of the stems, one of {', '.join(map(str, AUDIO_RATES))} (default {SAMPLE_RATE})",
    )  # fmt: skip
    render.set_defaults(func=_render)


def _add_cache(inner: argparse._SubParsersAction) -> None:
    cache = inner.add_parser(
        "cache",
        help="compute per-stem features of a dataset into ROOT/cache/<track>.npz",
        description="Cache audio, MIDI/annotated f0, tracked f0 and confidence, loudness, RMS "
        "and chroma for every track of a Slakh-layout or URMP dataset (resumable).",
    )
    cache.add_argument("root", type=Path, help="dataset folder")
    cache.add_argument("--workers", type=int, default=2, help="parallel processes")
    cache.add_argument("--split", choices=("train", "validation", "test"), default=None)
    cache.set_defaults(func=_cache)


def _add_pack(inner: argparse._SubParsersAction) -> None:
    pack = inner.add_parser(
        "pack",
        help="shrink a cached corpus into a training pack for a remote GPU machine",
        description="Keep what training reads: FLAC audio of the chosen instruments (up to a "
        "budget of seconds per split) and the conductor's features, as float16.",
    )
    pack.add_argument(
        "roots", type=Path, nargs="+", help="corpus folder(s) with cache/ and splits.json"
    )
    pack.add_argument("--out", type=Path, required=True, help="pack folder")
    pack.add_argument("--instruments", required=True, help="comma-separated decoder instruments")
    for split, seconds in (("train", 150.0), ("validation", 20.0)):
        pack.add_argument(
            f"--{split}-seconds",
            type=float,
            default=seconds,
            help=f"audio budget per instrument in the {split} split (default {seconds:g})",
        )
    pack.set_defaults(func=_pack)


def _add_unpack(inner: argparse._SubParsersAction) -> None:
    unpack = inner.add_parser("unpack", help="restore a training pack into feature caches")
    unpack.add_argument("pack", type=Path, help="pack folder")
    unpack.add_argument(
        "--out",
        type=Path,
        required=True,
        help="writes OUT/decoders and OUT/conductor, each a cached corpus",
    )
    unpack.set_defaults(func=_unpack)


def _render(args: argparse.Namespace) -> int:
    from ensemble.corpus import render_corpus

    _at_least_one(args.max_pieces, "--max-pieces")
    _at_least_one(args.workers, "--workers")
    check_writable(args.out)
    start = time.perf_counter()
    summary = render_corpus(
        args.out,
        max_pieces=args.max_pieces,
        seed=args.seed,
        soundfont=args.soundfont,
        workers=args.workers,
        max_seconds=args.max_seconds,
        sample_rate=args.sample_rate,
    )
    hours = sum(m["duration_s"] for m in summary.tracks.values()) / 3600
    sizes = {k: len(v) for k, v in summary.splits.items()}
    print(
        f"{len(summary.tracks)} tracks ({hours:.2f} h of audio) in {summary.root} after "
        f"{time.perf_counter() - start:.0f} s; splits {sizes}"
    )
    return 0 if summary.tracks else 1


def _cache(args: argparse.Namespace) -> int:
    from ensemble.data.cache import build_cache

    _at_least_one(args.workers, "--workers")
    start = time.perf_counter()
    report = build_cache(args.root, workers=args.workers, split=args.split)
    print(
        f"cached {report.written} tracks, kept {report.kept} already cached, skipped "
        f"{len(report.skipped)} malformed, in {time.perf_counter() - start:.0f} s "
        f"-> {report.cache_dir}"
    )
    return 0


def _pack(args: argparse.Namespace) -> int:
    from ensemble.data.pack import pack

    names = [n.strip() for n in args.instruments.split(",") if n.strip()]
    if not names:
        raise DataError("--instruments needs at least one instrument name.")
    check_writable(args.out)
    budget = {"train": args.train_seconds, "validation": args.validation_seconds}
    report = pack(args.roots, args.out, names, seconds=budget)
    for split, per in sorted(report.seconds.items()):
        print(f"{split}: " + ", ".join(f"{k} {v:.0f} s" for k, v in sorted(per.items())))
    print(f"packed {report.bytes / 1e6:.1f} MB -> {report.out}")
    return 0


def _unpack(args: argparse.Namespace) -> int:
    from ensemble.data.pack import unpack

    if not (args.pack / "decoders").is_dir():
        raise DataError(f"'{args.pack}' is not a training pack (no decoders/ folder).")
    check_writable(args.out)
    print(f"unpacked -> {unpack(args.pack, args.out)}")
    return 0
