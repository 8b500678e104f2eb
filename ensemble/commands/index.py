"""`python -m ensemble index build SOURCE --out INDEX`: the chunk database for continuations."""

from __future__ import annotations

import argparse
from pathlib import Path

from ensemble.limits import CHUNK_SECONDS, HOP_SECONDS, WORKERS


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("index", help="build or extend the RAG index of audio chunks")
    inner = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = inner.add_parser(
        "build",
        help="index a corpus or a folder of audio",
        description="Cut every file into chunks and store their style and seam features. "
        "SOURCE is a Slakh-layout corpus (TrackNNNNN/mix.flac, splits.json), a folder of audio "
        "files, or one file. The new index replaces INDEX atomically (the old one stays usable "
        "until it is complete).",
    )
    build.add_argument(
        "source", type=Path, metavar="SOURCE", help="corpus folder, audio folder or audio file"
    )
    build.add_argument("--out", type=Path, required=True, metavar="INDEX", help="index folder")
    build.add_argument(
        "--chunk-seconds",
        type=CHUNK_SECONDS.arg(),
        metavar="S",
        help="chunk length (default 4; --add: the index's)",
    )
    build.add_argument(
        "--hop-seconds",
        type=HOP_SECONDS.arg(),
        metavar="H",
        help="chunk spacing (default 1; --add: the index's)",
    )
    build.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: threads of this process; ray: one Ray task per file (a local Ray instance, "
        "or the cluster in RAY_ADDRESS)",
    )
    build.add_argument(
        "--workers",
        type=WORKERS.arg(int),
        metavar="N",
        help="files analysed in parallel: local threads or Ray CPUs (default: all cores)",
    )
    build.add_argument("--add", action="store_true", help="append new files to an existing index")
    build.add_argument(
        "--embedder",
        metavar="NAME",
        help="instrument checkpoint whose decoder GRU gives the style embedding (default "
        "violin; --add: the index's own)",
    )
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    build.set_defaults(func=_build)


def _build(args: argparse.Namespace) -> int:
    from ensemble.rag import build_index

    report = build_index(
        args.source,
        args.out,
        chunk_seconds=args.chunk_seconds,
        hop_seconds=args.hop_seconds,
        embedder=args.embedder,
        engine=args.engine,
        workers=args.workers,
        add=args.add,
        progress=not args.quiet,
    )
    index = report.index
    print(
        f"indexed {report.files_added} file(s), {report.chunks_added} chunks, "
        f"{report.audio_seconds / 60:.1f} min of audio in {report.total_seconds:.1f} s "
        f"({report.realtime_factor:.0f}x real time); {args.out} now holds {len(index)} chunks "
        f"from {len(index.files)} file(s)."
    )
    if report.skipped:
        print(f"skipped {len(report.skipped)} file(s): " + "; ".join(report.skipped[:5]))
    if len(index) == 0:
        print("warning: the index holds no chunks; queries will be refused until you --add audio.")
    return 0
