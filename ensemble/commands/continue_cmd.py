"""`python -m ensemble continue INPUT --index INDEX --out DIR`: Top-K retrieved continuations."""

from __future__ import annotations

import argparse
from pathlib import Path

from ensemble.config import (
    CONTINUATION_SECONDS,
    MAX_CONTINUATION_SECONDS,
    MIN_CONTINUATION_SECONDS,
)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "continue",
        help="extend an audio file with the best-fitting chunks of a RAG index",
        description="Ranks indexed chunks by style relevance (decoder-GRU context over 7-8.5 s "
        "lookbacks) and seam coherence (pitch, key, loudness), then writes DIR/ranking.json and "
        "one continuation_NN.wav per candidate: the input's last seconds, a crossfaded seam and "
        "the retrieved audio, rendered through the ensemble (a stereo mix) when --instruments "
        "is given.",
    )
    parser.add_argument(
        "input", type=Path, metavar="INPUT", help="audio file to continue (0.5-120 s)"
    )
    parser.add_argument(
        "--index", type=Path, required=True, metavar="INDEX", help="index folder (index build)"
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--top-k", type=int, default=10, metavar="K", help="continuations (default 10)"
    )
    parser.add_argument(
        "--hops", type=int, default=1, metavar="N", help="chunks chained per continuation"
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=CONTINUATION_SECONDS,
        metavar="S",
        help=f"length of each continuation after the input's ending, "
        f"{MIN_CONTINUATION_SECONDS:g}-{MAX_CONTINUATION_SECONDS:g} s (default "
        f"{CONTINUATION_SECONDS:g}); seams land on the beat",
    )
    parser.add_argument(
        "--instruments",
        metavar="LIST",
        help="comma-separated instruments to render with (default: raw audio)",
    )
    parser.add_argument("--leader", metavar="NAME", help="instrument that plays the melody")
    parser.add_argument(
        "--weights",
        metavar="FILE|k=v,...",
        help="score weights: a JSON file from `ensemble ratings fit` or name=value pairs, e.g. "
        "relevance=1,pitch_coherence=0.2,chroma_coherence=0.2,loudness_coherence=0.1",
    )
    parser.add_argument(
        "--candidates",
        type=int,
        default=200,
        metavar="N",
        help="stage-1 candidates reranked exactly",
    )
    parser.add_argument(
        "--embedder",
        metavar="NAME",
        help="checkpoint name or folder of the index's embedding model (default: the one the "
        "index records; it must have the same weights)",
    )
    parser.add_argument("--no-audio", action="store_true", help="write ranking.json only")
    parser.set_defaults(func=_continue)


def _continue(args: argparse.Namespace) -> int:
    from ensemble.errors import EnsembleError
    from ensemble.rag import Span, continue_audio, open_index, parse_weights, write_continuations
    from ensemble.rag.analyse import file_sha256
    from ensemble.rag.continuation import check_seconds

    counts = {"--top-k": args.top_k, "--hops": args.hops, "--candidates": args.candidates}
    for flag, value in counts.items():
        if value < 1:
            raise EnsembleError(f"{flag} must be at least 1, not {value}.")
    check_seconds(args.seconds)
    if args.leader and not args.instruments:
        raise EnsembleError("--leader needs --instruments (the leader must be one of them).")
    weights = parse_weights(args.weights)
    index = open_index(args.index)
    exclude = []
    if args.input.is_file():
        # Querying with an indexed file: its own chunks would be trivially "perfect".
        digest = file_sha256(args.input)
        exclude = [Span(r.name, 0.0, r.duration_s) for r in index.files if r.sha256 == digest]
    names = args.instruments.split(",") if args.instruments else []
    instruments = [n.strip() for n in names if n.strip()] or None
    embedder = None
    if args.embedder:
        from ensemble.instrument import Instrument

        embedder = Instrument.from_pretrained(args.embedder)
    results = continue_audio(
        args.input,
        index,
        top_k=args.top_k,
        hops=args.hops,
        weights=weights,
        candidates=args.candidates,
        exclude=exclude,
        instruments=instruments,
        leader=args.leader,
        embedder=embedder,
        render=not args.no_audio,
        seconds=args.seconds,
    )
    path = write_continuations(
        args.out,
        results,
        meta={
            "input": str(args.input),
            "index": str(args.index),
            "hops": args.hops,
            "seconds": args.seconds,
            "instruments": instruments or [],
            "weights": weights,
            "excluded": [s.source for s in exclude],
        },
    )
    for note in results[0].notes if results else []:
        print(f"note: {note}")
    for item in results:
        print(
            f"{item.rank:3d}  {'+'.join(item.chunk_ids):40s}  composite {item.composite:.3f}  "
            f"relevance {item.relevance:.3f}  coherence {item.coherence:.3f}"
        )
    print(f"wrote {path}")
    return 0
