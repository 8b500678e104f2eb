"""Decoder fidelity on held-out stems against two baselines, and the timbre confusion matrix.

    python bench/fidelity.py --data data/corpus [--checkpoints checkpoints] [--json FILE]
                             [--examples examples/] [--excerpts 6] [--seconds 8]

For every instrument with a checkpoint, excerpts of its test-split stems (validation when the test
split has none; the table says which) are resynthesised from what inference sees: the tracker's f0
(unvoiced frames hold the last pitch) and the stem's A-weighted loudness. Three systems render the
same inputs:

- ``decoder``: the trained checkpoint;
- ``untrained``: the same architecture with its initial weights;
- ``plain``: equal-amplitude harmonics (60, masked above Nyquist) or, for drums, white noise,
  with a per-frame gain that matches the input loudness, so it differs from the real stem only
  in timbre.

Metrics: f0 error in cents (median |Δ| over frames voiced in the input and in the output, with the
share of voiced input frames the output keeps voiced), loudness L1 in dB (frames above -60 dB in
the input), and the multi-scale spectral distance (`ensemble.dsp.multiscale_spectral_loss`) to the
real stem. The issue's bar: f0 < 20 cents, loudness < 3 dB, spectral ≤ 0.6 × plain.

Timbre confusion: every decoder resynthesises every instrument's excerpts; each row (real
instrument) lists the mean spectral distance per decoder, and the right decoder should be closest.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ensemble.config import HOP_LENGTH
from ensemble.data.cache import iter_cached_tracks
from ensemble.dsp import harmonic_amplitudes, harmonic_synth, multiscale_spectral_loss
from ensemble.features import VOICED_THRESHOLD, a_weighted_loudness, track_pitch
from ensemble.instrument import Instrument, build_decoder, fill_unvoiced_f0, list_pretrained

ACTIVE_DB = -60.0
F0_BAR_CENTS, LOUDNESS_BAR_DB, SPECTRAL_BAR = 20.0, 3.0, 0.6


@dataclass
class Excerpt:
    instrument: str
    label: str
    audio: np.ndarray  # (N,) float32, the real stem
    f0_hz: np.ndarray  # (T,) tracker f0, unvoiced frames held
    voiced: np.ndarray  # (T,) tracker voicing
    loudness_db: np.ndarray  # (T,)


def held_out_excerpts(
    root: Path, instrument: str, n_excerpts: int, seconds: float
) -> tuple[str, list[Excerpt]]:
    """Up to ``n_excerpts`` sounding excerpts (one per stem first, then more) of held-out stems."""
    n_frames = int(seconds * 100)
    for split in ("test", "validation"):
        stems = [
            (f"{track.track}/{sid}", arrays)
            for track in iter_cached_tracks(root, split)
            for sid, arrays in track.stems.items()
            if arrays["instrument"] == instrument
        ]
        candidates = []
        for label, arrays in stems:
            loud = np.asarray(arrays["loudness_db"], np.float32)
            active = np.concatenate([[0], np.cumsum(loud > ACTIVE_DB)])
            if len(loud) < n_frames:
                continue
            frac = (active[n_frames:] - active[:-n_frames]) / n_frames
            starts = np.flatnonzero(frac >= 0.6)[::n_frames]  # non-overlapping
            candidates.append([(label, arrays, int(s)) for s in starts])
        picked = []
        for rank in range(max((len(c) for c in candidates), default=0)):
            picked += [c[rank] for c in candidates if rank < len(c)]
        if picked:
            return split, [_excerpt(instrument, *p, n_frames) for p in picked[:n_excerpts]]
    return "none", []


def _excerpt(instrument: str, label: str, arrays: dict, start: int, n_frames: int) -> Excerpt:
    sl = slice(start, start + n_frames)
    audio = np.asarray(arrays["audio"][start * HOP_LENGTH : (start + n_frames) * HOP_LENGTH])
    voiced = np.asarray(arrays["confidence"][sl]) >= VOICED_THRESHOLD
    f0 = np.where(voiced, np.asarray(arrays["f0_tracked"][sl]), 0.0)
    return Excerpt(
        instrument,
        f"{label}@{start / 100:.1f}s",
        audio.astype(np.float32) / 32768.0,
        fill_unvoiced_f0(f0),
        voiced,
        np.asarray(arrays["loudness_db"][sl], np.float32),
    )


def plain_synth(ex: Excerpt, drums: bool, seed: int = 0) -> np.ndarray:
    """Equal-amplitude harmonics (or white noise for drums), gain-matched to the input loudness."""
    n = len(ex.loudness_db)
    if drums:
        raw = np.random.default_rng(seed).uniform(-1, 1, n * HOP_LENGTH).astype(np.float32)
    else:
        f0 = torch.from_numpy(ex.f0_hz)[None]
        amps = harmonic_amplitudes(torch.ones(1, n), torch.ones(1, n, 60), f0)
        raw = harmonic_synth(f0, amps)[0].numpy()
    # One loudness-matching pass: per-frame gain from the loudness difference, upsampled.
    gain_db = np.clip(ex.loudness_db - a_weighted_loudness(raw), -120, 60)
    gain = np.repeat(10 ** (gain_db / 20), HOP_LENGTH)
    return (raw * np.convolve(gain, np.hanning(2 * HOP_LENGTH) / HOP_LENGTH, "same")).astype(
        np.float32
    )


def spectral_distance(output: np.ndarray, real: np.ndarray) -> float:
    with torch.no_grad():
        return float(
            multiscale_spectral_loss(torch.from_numpy(output)[None], torch.from_numpy(real)[None])
        )


def metrics(output: np.ndarray, ex: Excerpt, pitched: bool) -> dict[str, float | None]:
    loud_out = a_weighted_loudness(output)
    sounding = ex.loudness_db > ACTIVE_DB
    result: dict[str, float | None] = {
        "loudness_l1_db": float(np.mean(np.abs(loud_out - ex.loudness_db)[sounding])),
        "spectral": spectral_distance(output, ex.audio),
        "f0_cents": None,
        "voicing_kept": None,
    }
    if pitched:
        f0_out, conf_out = track_pitch(output)
        ref = ex.voiced & sounding
        both = ref & (conf_out >= VOICED_THRESHOLD)
        if ref.any():
            result["voicing_kept"] = float(both.sum() / ref.sum())
        if both.any():
            cents = 1200 * np.abs(np.log2(f0_out[both] / ex.f0_hz[both]))
            result["f0_cents"] = float(np.median(cents))
    return result


def _mean(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r[key] is not None]
    return float(np.mean(values)) if values else None


def evaluate(instrument: Instrument, excerpts: list[Excerpt]) -> dict[str, dict]:
    pitched = instrument.kind == "pitched"
    torch.manual_seed(0)
    untrained = Instrument(instrument.config, build_decoder(instrument.config))
    per_system: dict[str, list[dict]] = {"decoder": [], "untrained": [], "plain": []}
    for ex in excerpts:
        f0 = ex.f0_hz if pitched else None
        per_system["decoder"].append(metrics(instrument.render(f0, ex.loudness_db), ex, pitched))
        per_system["untrained"].append(metrics(untrained.render(f0, ex.loudness_db), ex, pitched))
        per_system["plain"].append(metrics(plain_synth(ex, not pitched), ex, pitched))
    keys = ("f0_cents", "voicing_kept", "loudness_l1_db", "spectral")
    return {name: {k: _mean(rows, k) for k in keys} for name, rows in per_system.items()}


def _fmt(value: float | None, spec: str) -> str:
    return "   n/a" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="corpus root with cache/")
    parser.add_argument("--checkpoints", type=Path, help="checkpoint root (default checkpoints/)")
    parser.add_argument("--instruments", nargs="+", help="default: every checkpoint")
    parser.add_argument("--excerpts", type=int, default=6, help="excerpts per instrument")
    parser.add_argument("--seconds", type=float, default=8.0, help="excerpt length")
    parser.add_argument("--json", type=Path, help="write all results here")
    parser.add_argument("--examples", type=Path, help="write a real/decoder/plain wav triple here")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    names = args.instruments or list_pretrained(args.checkpoints)
    root = args.checkpoints
    instruments = {n: Instrument.from_pretrained(root / n if root else n) for n in names}
    data: dict[str, tuple[str, list[Excerpt]]] = {
        n: held_out_excerpts(args.data, n, args.excerpts, args.seconds) for n in names
    }
    report: dict = {
        "instruments": {},
        "bar": {
            "f0_cents": F0_BAR_CENTS,
            "loudness_l1_db": LOUDNESS_BAR_DB,
            "spectral_vs_plain": SPECTRAL_BAR,
        },
    }
    print(
        f"{'instrument':12s} {'split':10s} {'n':>2s}  {'system':9s} {'f0 ¢':>6s} {'voiced':>6s} "
        f"{'loud dB':>7s} {'spectral':>8s}"
    )
    for name, inst in instruments.items():
        split, excerpts = data[name]
        if not excerpts:
            print(f"{name:12s} no held-out stems in the cache")
            continue
        result = evaluate(inst, excerpts)
        for system, m in result.items():
            print(
                f"{name:12s} {split:10s} {len(excerpts):2d}  {system:9s} "
                f"{_fmt(m['f0_cents'], '6.1f')} {_fmt(m['voicing_kept'], '6.2f')} "
                f"{_fmt(m['loudness_l1_db'], '7.2f')} {_fmt(m['spectral'], '8.3f')}"
            )
        dec, plain = result["decoder"], result["plain"]
        passes = {
            "f0": dec["f0_cents"] is None or dec["f0_cents"] < F0_BAR_CENTS,
            "loudness": dec["loudness_l1_db"] < LOUDNESS_BAR_DB,
            "spectral": dec["spectral"] <= SPECTRAL_BAR * plain["spectral"],
        }
        print(
            f"{'':12s} bar: " + ", ".join(f"{k} {'ok' if v else 'FAIL'}" for k, v in passes.items())
        )
        report["instruments"][name] = {
            "split": split,
            "excerpts": [e.label for e in excerpts],
            "systems": result,
            "passes": passes,
        }
        if args.examples:
            _write_examples(args.examples, name, inst, excerpts[0])

    evaluated = [n for n in names if data[n][1]]
    confusion = [
        [
            float(
                np.mean(
                    [
                        spectral_distance(instruments[d].render(ex.f0_hz, ex.loudness_db), ex.audio)
                        for ex in data[real][1]
                    ]
                )
            )
            for d in evaluated
        ]
        for real in evaluated
    ]
    print("\ntimbre confusion: mean spectral distance (rows: real stems, columns: decoders)")
    print(f"{'':12s}" + "".join(f"{d[:9]:>10s}" for d in evaluated))
    for real, row in zip(evaluated, confusion, strict=True):
        best = int(np.argmin(row))
        cells = "".join(f"{v:9.3f}{'*' if j == best else ' '}" for j, v in enumerate(row))
        print(f"{real:12s}{cells}")
    correct = [int(np.argmin(row)) == i for i, row in enumerate(confusion)]
    print(f"right decoder closest for {sum(correct)}/{len(correct)} instruments")
    report["confusion"] = {
        "instruments": evaluated,
        "distance": confusion,
        "diagonal_dominant": all(correct),
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")


def _write_examples(folder: Path, name: str, inst: Instrument, ex: Excerpt) -> None:
    from ensemble.audio import write_audio

    n = min(len(ex.audio), 4 * 16000)
    cut = n // HOP_LENGTH
    f0 = ex.f0_hz[:cut] if inst.kind == "pitched" else None
    folder.mkdir(parents=True, exist_ok=True)
    write_audio(folder / f"{name}_real.wav", ex.audio[:n])
    write_audio(folder / f"{name}_decoder.wav", inst.render(f0, ex.loudness_db[:cut]))
    write_audio(folder / f"{name}_plain.wav", plain_synth(ex, inst.kind == "drums")[:n])


if __name__ == "__main__":
    main()
