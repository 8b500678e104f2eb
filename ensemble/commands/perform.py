"""`python -m ensemble perform INPUT --instruments ... --out DIR`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ensemble.commands import load_inputs, output_names
from ensemble.limits import AUTOTUNE, GAIN_DB, OCTAVES, QUIET_DB, SEMITONES
from ensemble.outputs import check_folder, replace_folder

if TYPE_CHECKING:
    from ensemble.perform import Performance, PerformSettings

RESULT = "metrics.json"


def _gain(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"'{text}' is not NAME=DB (e.g. cello=-6)")
    return name.strip().lower(), GAIN_DB.arg()(value)


# (flags, argparse keywords), in --help order.
OPTIONS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (("inputs",), {"type": Path, "nargs": "+", "metavar": "INPUT",
                   "help": "audio file(s) (wav, flac, ogg, mp3; 0.5-120 s); several share one "
                   "model load and each gets DIR/<file name>/"}),
    (("--instruments",), {"default": "violin,cello,bass,drums",
                          "help": "comma-separated instruments to play (default: "
                          "violin,cello,bass,drums)"}),
    (("--leader",), {"help": "instrument that plays the input's melody (default: first pitched "
                     "one in --instruments)"}),
    (("--out",), {"type": Path, "required": True,
                  "help": "output folder (created; one written by an earlier perform is "
                  "replaced whole)"}),
    (("--checkpoints",), {"help": "checkpoint folder or Hugging Face repo id (default: the "
                          "shipped checkpoints/)"}),
    (("--no-auto-adjust",), {"action": "store_true",
                             "help": "keep the input's register and loudness instead of mapping "
                             "them to the leader's training range"}),
    (("--octave-shift",), {"type": OCTAVES.arg(int), "default": 0,
                           "help": "extra octaves for the leader"}),
    (("--semitones",), {"type": SEMITONES.arg(), "default": 0.0,
                        "help": "extra semitones for the leader"}),
    (("--loudness-shift",), {"type": GAIN_DB.arg(), "default": 0.0,
                             "help": "dB added to every instrument's loudness control"}),
    (("--quiet-threshold",), {"type": QUIET_DB.arg(), "default": -60.0,
                              "help": "input frames quieter than this (dB) stay silent (default "
                              "-60)"}),
    (("--autotune",), {"type": AUTOTUNE.arg(), "default": 0.0,
                       "help": "0..1: pull the leader's pitch toward the nearest semitone"}),
    (("--gain",), {"type": _gain, "action": "append", "default": [], "metavar": "NAME=DB",
                   "help": "per-instrument gain in dB on top of the loudness balance, repeatable "
                   "(e.g. --gain drums=-6)"}),
    (("--leader-gain",), {"type": GAIN_DB.arg(), "default": 0.0,
                          "help": "extra dB for the leader on top of the loudness balance, which "
                          "already puts it in front (default 0)"}),
    (("--mute",), {"default": "", "help": "comma-separated instruments to leave out"}),
    (("--trim",), {"action": "store_true",
                   "help": "keep the first 120 s of a longer input instead of refusing it"}),
    (("--png",), {"action": "store_true", "help": "also write DIR/plots.png"}),
    (("--midi",), {"action": "store_true",
                   "help": "also write DIR/arrangement.mid: one track per instrument (GM "
                   "programs, drums on channel 10), tempo and time signature from the beat "
                   "tracker"}),
)


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
    for flags, options in OPTIONS:
        p.add_argument(*flags, **options)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ensemble.perform import Ensemble

    check_folder(args.out, command="perform", result_file=RESULT)
    audios = load_inputs(args.inputs, args.trim)
    settings = _settings(args)
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


def _settings(args: argparse.Namespace) -> PerformSettings:
    from ensemble.perform import PerformSettings

    return PerformSettings(
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


def _write(
    out: Path, source: Path, performance: Performance, *, png: bool, midi: bool
) -> None:
    from ensemble.metrics import metrics_json

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
    performance.write(out, midi=midi, metrics=report)
    if png:
        from ensemble.plots import save_png

        save_png({k: metrics[k] for k in ("input", "mix")}, out / "plots.png", source.name)
