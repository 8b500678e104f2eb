"""`python -m ensemble song grow INPUT --index INDEX --sections N --out DIR`: a song that grows."""

from __future__ import annotations

import argparse
from pathlib import Path

from ensemble.config import (
    CONTINUATION_SECONDS,
    MAX_CONTINUATION_SECONDS,
    MIN_CONTINUATION_SECONDS,
    SAMPLE_RATE,
)

MAX_SECTIONS = 12


def register(sub: argparse._SubParsersAction) -> None:
    song = sub.add_parser("song", help="grow a song from an input by kept continuations")
    verbs = song.add_subparsers(dest="verb", metavar="VERB", required=True)
    p = verbs.add_parser(
        "grow",
        help="keep the top-ranked continuation N times and perform the whole song",
        description="Continues INPUT from the index N times, each time from the song's new "
        "ending (seams on the beat; material never reused), then performs the whole song "
        "through the ensemble. Writes DIR/song.wav (stereo mix), DIR/stems/<name>.wav, "
        "DIR/song.mid and DIR/song.json (every section's provenance).",
    )
    p.add_argument("input", type=Path, help="audio file (wav, flac, ogg, mp3)")
    p.add_argument("--index", type=Path, required=True, metavar="DIR", help="RAG index folder")
    p.add_argument("--sections", type=int, default=4, metavar="N",
                   help=f"continuations to keep, 1-{MAX_SECTIONS} (default 4)")  # fmt: skip
    p.add_argument(
        "--seconds",
        type=float,
        default=CONTINUATION_SECONDS,
        metavar="S",
        help=f"length of each section, {MIN_CONTINUATION_SECONDS:g}-"
        f"{MAX_CONTINUATION_SECONDS:g} s (default {CONTINUATION_SECONDS:g})",
    )
    p.add_argument("--instruments", default="violin,cello,bass,drums", metavar="LIST",
                   help="comma-separated instruments to perform with")  # fmt: skip
    p.add_argument("--leader", metavar="NAME", help="instrument that plays the melody")
    p.add_argument("--hops", type=int, default=1, metavar="N", help="chunks chained per section")
    p.add_argument("--weights", metavar="FILE|k=v,...", help="score weights (see `continue`)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.set_defaults(func=_grow)


def _grow(args: argparse.Namespace) -> int:
    from ensemble.audio import load_audio
    from ensemble.errors import EnsembleError
    from ensemble.perform import Ensemble
    from ensemble.rag import Span, open_index, parse_weights
    from ensemble.rag.analyse import file_sha256
    from ensemble.rag.continuation import check_seconds
    from ensemble.song import Song, grow, perform_song, write_song

    if not 1 <= args.sections <= MAX_SECTIONS:
        raise EnsembleError(f"--sections must be 1 to {MAX_SECTIONS}, not {args.sections}.")
    if args.hops < 1:
        raise EnsembleError(f"--hops must be at least 1, not {args.hops}.")
    check_seconds(args.seconds)
    weights = parse_weights(args.weights)
    instruments = [n.strip() for n in args.instruments.split(",") if n.strip()]
    ensemble = Ensemble.from_pretrained()
    audio = load_audio(args.input)
    index = open_index(args.index)
    digest = file_sha256(args.input)
    exclude = [Span(r.name, 0.0, r.duration_s) for r in index.files if r.sha256 == digest]
    song = grow(Song(audio, len(audio) / SAMPLE_RATE), index, sections=args.sections,
                seconds=args.seconds, exclude=exclude, hops=args.hops, weights=weights)  # fmt: skip
    performance = perform_song(song, ensemble, instruments, args.leader)
    for message in performance.messages:
        print(message)
    write_song(args.out, song, performance, input=str(args.input), index=str(args.index),
               seconds=args.seconds, weights=weights)  # fmt: skip
    for section in song.sections:
        print(f"{section.song_start_s:6.1f} s  {'+'.join(section.chunk_ids):32s} composite "
              f"{section.composite:.3f}  tempo x{section.tempo_ratio:.3f}")  # fmt: skip
    print(f"wrote {args.out}/song.wav ({song.duration_s:.1f} s), stems, song.mid and song.json")
    return 0
