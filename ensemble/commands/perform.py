"""`python -m ensemble perform INPUT --instruments ... --out DIR`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from ensemble.commands import load_inputs, output_names
from ensemble.limits import AUTOTUNE, GAIN_DB, OCTAVES, QUIET_DB, SEMITONES
from ensemble.outputs import check_folder, replace_folder

if TYPE_CHECKING:
    from ensemble.perform import Performance

RESULT = "metrics.json"


def _gain(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"'{text}' is not NAME=DB (e.g. cello=-6)")
    return name.strip().lower(), GAIN_DB.arg()(value)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "perform",
        help="perform an audio file as a multi-instrument ensemble",
        description="The input's melody drives the leader decoder (timbre transfer); the "
        "conductor plays the other instruments. Writes DIR/mix.wav, DIR/stems/<name>.wav and "
        "DIR/metrics.json (+ DIR/plots.png with --png, DIR/arrangement.mid with --midi). Audio "
        "is stereo: stems balanced by loudness per role, placed and in one room; the mix at "
        "-14 LUFS under -1 dBTP.",
    )
    p.add_argument(
        "inputs",
        type=Path,
        nargs="+",
        metavar="INPUT",
        help="audio file(s) (wav, flac, ogg, mp3; 0.5-120 s); several share one model load and "
        "each gets DIR/<file name>/",
    )
    p.add_argument(
        "--instruments",
        default="violin,cello,bass,drums",
        help="comma-separated instruments to play (default: violin,cello,bass,drums)",
    )
    p.add_argument(
        "--leader",
        help="instrument that plays the input's melody (default: first "
        "pitched one in --instruments)",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output folder (created; one written by an earlier perform is replaced whole)",
    )
    p.add_argument(
        "--checkpoints",
        help="checkpoint folder or Hugging Face repo id (default: the shipped checkpoints/)",
    )
    p.add_argument(
        "--no-auto-adjust",
        action="store_true",
        help="keep the input's register and loudness instead of mapping them to the "
        "leader's training range",
    )
    p.add_argument(
        "--octave-shift", type=OCTAVES.arg(int), default=0, help="extra octaves for the leader"
    )
    p.add_argument(
        "--semitones", type=SEMITONES.arg(), default=0.0, help="extra semitones for the leader"
    )
    p.add_argument(
        "--loudness-shift",
        type=GAIN_DB.arg(),
        default=0.0,
        help="dB added to every instrument's loudness control",
    )
    p.add_argument(
        "--quiet-threshold",
        type=QUIET_DB.arg(),
        default=-60.0,
        help="input frames quieter than this (dB) stay silent (default -60)",
    )
    p.add_argument(
        "--autotune",
        type=AUTOTUNE.arg(),
        default=0.0,
        help="0..1: pull the leader's pitch toward the nearest semitone",
    )
    p.add_argument(
        "--gain",
        type=_gain,
        action="append",
        default=[],
        metavar="NAME=DB",
        help="per-instrument gain in dB on top of the loudness balance, repeatable "
        "(e.g. --gain drums=-6)",
    )
    p.add_argument(
        "--leader-gain",
        type=GAIN_DB.arg(),
        default=0.0,
        help="extra dB for the leader on top of the loudness balance, which already puts it "
        "in front (default 0)",
    )
    p.add_argument("--mute", default="", help="comma-separated instruments to leave out")
    p.add_argument(
        "--trim",
        action="store_true",
        help="keep the first 120 s of a longer input instead of refusing it",
    )
    p.add_argument("--png", action="store_true", help="also write DIR/plots.png")
    p.add_argument(
        "--midi",
        action="store_true",
        help="also write DIR/arrangement.mid: one track per instrument (GM programs, drums on "
        "channel 10), tempo and time signature from the beat tracker",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ensemble.perform import Ensemble, PerformSettings

    check_folder(args.out, command="perform", result_file=RESULT)
    audios = load_inputs(args.inputs, args.trim)
    settings = PerformSettings(
        auto_adjust=not args.no_auto_adjust,
        octave_shift=args.octave_shift,
        semitone_shift=args.semitones,
        loudness_shift_db=args.loudness_shift,
        quiet_threshold_db=args.quiet_threshold,
        autotune=args.autotune,
        leader_gain_db=args.leader_gain,
        gains_db=dict(args.gain),
        mute=tuple(n.strip().lower() for n in args.mute.split(",") if n.strip()),
    )
    ensemble = Ensemble.from_pretrained(args.checkpoints)
    with replace_folder(args.out, command="perform") as tmp:
        for path, audio, name in zip(args.inputs, audios, output_names(args.inputs), strict=True):
            performance = ensemble.perform(
                audio, args.instruments.split(","), leader=args.leader, settings=settings
            )
            for message in performance.messages:
                print(message)
            _write(tmp / name, path, performance, png=args.png, midi=args.midi)
            print(f"{path}: {len(performance.stems)} stems -> {args.out / name}")
    print(f"wrote {args.out}")
    return 0


def _write(
    out: Path, source: Path, performance: Performance, *, png: bool, midi: bool
) -> None:
    from ensemble.audio import write_audio
    from ensemble.metrics import metrics_json

    write_audio(out / "mix.wav", performance.mix)
    for name, stem in performance.stems.items():
        write_audio(out / "stems" / f"{name}.wav", stem)
    metrics = performance.metrics()
    report = {
        "input": str(source),
        "leader": performance.leader,
        "instruments": list(performance.stems),
        "messages": performance.messages,
        "loudness": performance.mixing.to_json(performance.leader),
        "rhythm": performance.grid.to_json(),
        "harmony": performance.context.to_json() if performance.context else None,
        "metrics": metrics_json(metrics, series=True),
    }
    (out / RESULT).write_text(json.dumps(report, indent=1, allow_nan=False))
    if midi:
        from ensemble.arrangement_midi import write_arrangement_midi

        write_arrangement_midi(out / "arrangement.mid", performance)
    if png:
        from ensemble.plots import save_png

        save_png({k: metrics[k] for k in ("input", "mix")}, out / "plots.png", source.name)
