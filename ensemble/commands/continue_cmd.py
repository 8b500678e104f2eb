"""`python -m ensemble continue INPUT --index INDEX --out DIR`: Top-K retrieved continuations."""

from __future__ import annotations

import argparse
from pathlib import Path

from ensemble.commands import add_seconds_argument, load_inputs, output_names
from ensemble.limits import (
    DEFAULT_TOP_K,
    HOPS,
    RERANK,
    TOP_K,
    check_continue,
)
from ensemble.outputs import check_folder, replace_folder

RESULT = "ranking.json"


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
        "inputs",
        type=Path,
        nargs="+",
        metavar="INPUT",
        help="audio file(s) to continue (0.5-120 s); several share one index and model load and "
        "each gets DIR/<file name>/",
    )
    parser.add_argument(
        "--index", type=Path, required=True, metavar="INDEX", help="index folder (index build)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="output folder (created; one written by an earlier continue is replaced whole)",
    )
    parser.add_argument(
        "--top-k",
        type=TOP_K.arg(int),
        default=DEFAULT_TOP_K,
        metavar="K",
        help=f"continuations, {TOP_K.describe()} (default {DEFAULT_TOP_K})",
    )
    parser.add_argument(
        "--hops",
        type=HOPS.arg(int),
        default=1,
        metavar="N",
        help=f"chunks chained per continuation, {HOPS.describe()} (default 1)",
    )
    add_seconds_argument(parser, "continuation after the input's ending")
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
        type=RERANK.arg(int),
        default=200,
        metavar="N",
        help=f"stage-1 candidates reranked exactly, {RERANK.describe()} (default 200)",
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
    from ensemble.rag.scoring import parse_weights

    if args.leader and not args.instruments:
        raise EnsembleError("--leader needs --instruments (the leader must be one of them).")
    weights = parse_weights(args.weights)
    check_continue(args.top_k, args.hops, weights, args.candidates)
    check_folder(args.out, command="continue", result_file=RESULT)
    audios = load_inputs(args.inputs)  # checked before the index, models and torch load

    from ensemble.instrument import Instrument
    from ensemble.rag import Span, continue_audio, open_index, write_continuations
    from ensemble.rag.analyse import file_sha256

    index = open_index(args.index)
    names = args.instruments.split(",") if args.instruments else []
    instruments = [n.strip() for n in names if n.strip()] or None
    # Loaded once for every input, not once per query.
    embedder = Instrument.from_pretrained(args.embedder or index.config.embedder)
    ensemble = None
    if instruments:
        from ensemble.perform import Ensemble

        ensemble = Ensemble.from_pretrained()
    with replace_folder(args.out, command="continue") as tmp:
        for path, audio, name in zip(args.inputs, audios, output_names(args.inputs), strict=True):
            # Querying with an indexed file: its own chunks would be trivially "perfect".
            digest = file_sha256(path)
            exclude = [Span(r.name, 0.0, r.duration_s) for r in index.files if r.sha256 == digest]
            results = continue_audio(
                audio,
                index,
                top_k=args.top_k,
                hops=args.hops,
                weights=weights,
                candidates=args.candidates,
                exclude=exclude,
                instruments=instruments,
                leader=args.leader,
                embedder=embedder,
                ensemble=ensemble,
                render=not args.no_audio,
                seconds=args.seconds,
            )
            write_continuations(
                tmp / name,
                results,
                meta={
                    "input": str(path),
                    "index": str(args.index),
                    "hops": args.hops,
                    "seconds": args.seconds,
                    "instruments": instruments or [],
                    "weights": weights,
                    "excluded": [s.source for s in exclude],
                },
            )
            _print(path, results)
    print(f"wrote {args.out}")
    return 0


def _print(path: Path, results: list) -> None:
    print(f"{path}:")
    for note in results[0].notes if results else []:
        print(f"note: {note}")
    for item in results:
        print(
            f"{item.rank:3d}  {'+'.join(item.chunk_ids):40s}  composite {item.composite:.3f}  "
            f"relevance {item.relevance:.3f}  coherence {item.coherence:.3f}"
        )
