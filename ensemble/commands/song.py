"""`python -m ensemble song grow INPUT --index INDEX --sections N --out DIR`: a song that grows."""

from __future__ import annotations

import argparse
from pathlib import Path

from ensemble.commands import add_seconds_argument
from ensemble.limits import HOPS, SECTIONS

RESULT = "song.json"


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
    p.add_argument("--sections", type=SECTIONS.arg(int), default=4, metavar="N",
                   help=f"continuations to keep, {SECTIONS.describe()} (default 4)")  # fmt: skip
    add_seconds_argument(p, "section")
    p.add_argument("--instruments", default="violin,cello,bass,drums", metavar="LIST",
                   help="comma-separated instruments to perform with")  # fmt: skip
    p.add_argument("--leader", metavar="NAME", help="instrument that plays the melody")
    p.add_argument("--hops", type=HOPS.arg(int), default=1, metavar="N",
                   help=f"chunks chained per section, {HOPS.describe()} (default 1)")  # fmt: skip
    p.add_argument("--weights", metavar="FILE|k=v,...", help="score weights (see `continue`)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="output folder (created; one written by an earlier song grow is "
                   "replaced whole)")  # fmt: skip
    p.set_defaults(func=_grow)


def _grow(args: argparse.Namespace) -> int:
    from ensemble.commands import load_inputs
    from ensemble.config import SAMPLE_RATE
    from ensemble.limits import check_continue
    from ensemble.outputs import check_folder, replace_folder
    from ensemble.rag.scoring import parse_weights

    weights = parse_weights(args.weights)
    check_continue(1, args.hops, weights)
    check_folder(args.out, command="song grow", result_file=RESULT)
    (audio,) = load_inputs([args.input])  # checked before the index and models load

    from ensemble.perform import Ensemble
    from ensemble.rag import open_index
    from ensemble.rag.continuation import copies_of
    from ensemble.song import Song, grow, write_song

    index = open_index(args.index)
    exclude = copies_of(index, args.input)
    song = grow(Song(audio, len(audio) / SAMPLE_RATE), index, sections=args.sections,
                seconds=args.seconds, exclude=exclude, hops=args.hops, weights=weights)  # fmt: skip
    instruments = [n.strip() for n in args.instruments.split(",") if n.strip()]
    performance = Ensemble.from_pretrained().perform(song.audio, instruments, args.leader)
    for message in performance.messages:
        print(message)
    with replace_folder(args.out, command="song grow") as tmp:
        write_song(tmp, song, performance, input=str(args.input), index=str(args.index),
                   seconds=args.seconds, weights=weights)  # fmt: skip
    for section in song.sections:
        print(f"{section.song_start_s:6.1f} s  {'+'.join(section.chunk_ids):32s} composite "
              f"{section.composite:.3f}  tempo x{section.tempo_ratio:.3f}")  # fmt: skip
    print(f"wrote {args.out}/song.wav ({song.duration_s:.1f} s), stems, song.mid and song.json")
    return 0
