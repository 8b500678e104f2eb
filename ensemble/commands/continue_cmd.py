"""`python -m ensemble continue INPUT --index INDEX --out DIR`: Top-K retrieved continuations."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ensemble.commands import add_seconds_argument, load_inputs, output_names
from ensemble.config import SAMPLE_RATE
from ensemble.limits import (
    DEFAULT_TOP_K,
    HOPS,
    RERANK,
    TOP_K,
    check_continue,
)
from ensemble.outputs import check_folder, replace_folder

if TYPE_CHECKING:
    from ensemble.rag import Continuation, Lineup

RESULT = "ranking.json"

# (flags, argparse keywords), in --help order; --seconds follows --hops.
OPTIONS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (("inputs",), {"type": Path, "nargs": "+", "metavar": "INPUT",
                   "help": "audio file(s) to continue (0.5-120 s); several share one index and "
                   "model load and each gets DIR/<file name>/"}),
    (("--index",), {"type": Path, "required": True, "metavar": "INDEX",
                    "help": "index folder (index build)"}),
    (("--out",), {"type": Path, "required": True, "metavar": "DIR",
                  "help": "output folder (created; one written by an earlier continue is "
                  "replaced whole)"}),
    (("--top-k",), {"type": TOP_K.arg(int), "default": DEFAULT_TOP_K, "metavar": "K",
                    "help": f"continuations, {TOP_K.describe()} (default {DEFAULT_TOP_K})"}),
    (("--hops",), {"type": HOPS.arg(int), "default": 1, "metavar": "N",
                   "help": f"chunks chained per continuation, {HOPS.describe()} (default 1)"}),
)
MORE_OPTIONS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (("--instruments",), {"metavar": "LIST",
                          "help": "comma-separated instruments to render with (default: raw "
                          "audio)"}),
    (("--leader",), {"metavar": "NAME", "help": "instrument that plays the melody"}),
    (("--weights",), {"metavar": "FILE|k=v,...",
                      "help": "score weights: a JSON file from `ensemble ratings fit` or "
                      "name=value pairs, e.g. relevance=1,pitch_coherence=0.2,"
                      "chroma_coherence=0.2,loudness_coherence=0.1"}),
    (("--candidates",), {"type": RERANK.arg(int), "default": 200, "metavar": "N",
                         "help": f"stage-1 candidates reranked exactly, {RERANK.describe()} "
                         "(default 200)"}),
    (("--embedder",), {"metavar": "NAME",
                       "help": "checkpoint name or folder of the index's embedding model "
                       "(default: the one the index records; it must have the same weights)"}),
    (("--no-audio",), {"action": "store_true", "help": "write ranking.json only"}),
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
    for flags, options in OPTIONS:
        parser.add_argument(*flags, **options)
    add_seconds_argument(parser, "continuation after the input's ending")
    for flags, options in MORE_OPTIONS:
        parser.add_argument(*flags, **options)
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
    from ensemble.rag import open_index, render_continuations, retrieve, write_continuations
    from ensemble.rag.continuation import copies_of

    index = open_index(args.index)
    # Loaded once for every input, not once per query.
    embedder = Instrument.from_pretrained(args.embedder or index.config.embedder)
    lineup = _lineup(args)
    with replace_folder(args.out, command="continue") as tmp:
        for path, audio, name in zip(args.inputs, audios, output_names(args.inputs), strict=True):
            # Querying with an indexed file: its own chunks would be trivially "perfect".
            exclude = copies_of(index, path)
            found = retrieve(audio, index, top_k=args.top_k, hops=args.hops, weights=weights,
                             candidates=args.candidates, exclude=exclude, embedder=embedder,
                             seconds=args.seconds)  # fmt: skip
            # Raw continuations keep the quality of the files they come from.
            rate = SAMPLE_RATE if lineup or args.no_audio else found.output_rate()
            rendered = (found.continuations if args.no_audio
                        else render_continuations(found, lineup, rate=rate))  # fmt: skip
            write_continuations(tmp / name, rendered, notes=found.notes,
                                meta=_meta(args, path, lineup, weights, exclude))  # fmt: skip
            _print(path, found.notes, rendered)
    print(f"wrote {args.out}")
    return 0


def _lineup(args: argparse.Namespace) -> Lineup | None:
    """The ensemble that renders the continuations; None for raw audio."""
    names = args.instruments.split(",") if args.instruments else []
    instruments = [n.strip() for n in names if n.strip()]
    if not instruments:
        return None
    from ensemble.perform import Ensemble
    from ensemble.rag import Lineup

    return Lineup(Ensemble.from_pretrained(), instruments, args.leader)


def _meta(args: argparse.Namespace, path: Path, lineup: Lineup | None, weights: dict[str, float],
          exclude: list) -> dict[str, Any]:  # fmt: skip
    return {
        "input": str(path),
        "index": str(args.index),
        "hops": args.hops,
        "seconds": args.seconds,
        "instruments": lineup.instruments if lineup else [],
        "weights": weights,
        "excluded": [s.source for s in exclude],
    }


def _print(path: Path, notes: list[str], results: list[Continuation]) -> None:
    print(f"{path}:")
    for note in notes:
        print(f"note: {note}")
    for item in results:
        print(
            f"{item.rank:3d}  {'+'.join(item.chunk_ids):40s}  composite {item.composite:.3f}  "
            f"relevance {item.relevance:.3f}  coherence {item.coherence:.3f}"
        )
