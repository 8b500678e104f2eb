"""Decoder fidelity on held-out stems against two baselines, and the timbre confusion matrix.

    python bench/fidelity.py --data data/corpus [--checkpoints checkpoints] [--baseline ROOT]
                             [--instruments NAME ...] [--split test|validation] [--json FILE]
                             [--examples examples/] [--excerpts 6] [--seconds 8]

For every instrument with a checkpoint, excerpts of its test-split stems (validation when the test
split has none, or ``--split``; the table says which) are resynthesised from what inference sees:
the tracker's f0 (unvoiced frames hold the last pitch) and the stem's A-weighted loudness, both
from the 16 kHz feature cache. Everything is scored at the corpus's rate, against the real stem
read at that rate (`corpus render --sample-rate`; the cache's 16 kHz audio for corpora rendered
before the rate was a setting). Each decoder renders at its own rate; output at another rate is
resampled (soxr) to the corpus's, so a 16 kHz decoder on a 44.1 kHz corpus is upsampled and scored
against the same 44.1 kHz stems. The systems:

- ``decoder``: the trained checkpoint (``--checkpoints``);
- ``untrained``: the same architecture with its initial weights;
- ``baseline`` and ``baseline untrained``: the same instrument from another checkpoint root
  (``--baseline``, e.g. the 16 kHz decoders beside 44.1 kHz ones), on the same excerpts;
- ``plain``: equal-amplitude harmonics at the corpus's rate (as many as the decoder at that rate
  has: 60 at 16 kHz, 100 for the 44.1 kHz default; masked above Nyquist) or, for drums, white
  noise, with a per-frame gain that matches the input loudness, so it differs from the real stem
  only in timbre.

Metrics: f0 error in cents (median |Δ| over frames voiced in the input and in the output, with the
share of voiced input frames the output keeps voiced) and loudness L1 in dB (frames above -60 dB in
the input), both analysed at 16 kHz; the multi-scale spectral distance
(`ensemble.dsp.multiscale_spectral_loss`, STFT sizes `loss_fft_sizes(rate)`) to the real stem,
comparable only between systems scored at the same rate; and the high-band share: the energy above
8 kHz over the total, in dB, of the output at its own rate and of the real stem, with their
difference (-inf for output at 16 kHz, which has no band above 8 kHz; the JSON writes infinities
as the strings "-inf"/"inf" and undefined values as null). The issue's bars: f0 < 20 cents,
loudness < 3 dB, spectral ≤ 0.6 × plain at 16 kHz and ≤ 0.4 × plain above, high-band share within
6 dB of the real stem's above 16 kHz.

Timbre confusion (``--checkpoints`` only): every decoder resynthesises every instrument's
excerpts; each row (real instrument) lists the mean spectral distance per decoder, and the right
decoder should be closest.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from ensemble.audio import resample
from ensemble.config import FRAME_RATE, SAMPLE_RATE
from ensemble.data.cache import iter_cached_tracks
from ensemble.dsp import (
    harmonic_amplitudes,
    harmonic_synth,
    loss_fft_sizes,
    multiscale_spectral_loss,
)
from ensemble.features import VOICED_THRESHOLD, a_weighted_loudness, track_pitch
from ensemble.instrument import (
    Instrument,
    build_decoder,
    default_config,
    fill_unvoiced_f0,
    list_pretrained,
)
from ensemble.training.instrument import stem_audio_file

ACTIVE_DB = -60.0
HIGH_BAND_HZ = 8000.0
F0_BAR_CENTS, LOUDNESS_BAR_DB, HIGH_BAND_BAR_DB = 20.0, 3.0, 6.0
SPECTRAL_BAR, HIFI_SPECTRAL_BAR = 0.6, 0.4  # × plain: at 16 kHz, above 16 kHz
KEYS = ("f0_cents", "voicing_kept", "loudness_l1_db", "spectral", "highband_db", "highband_diff_db")
SIDES = ("checkpoints", "baseline")


@dataclass
class Excerpt:
    instrument: str
    label: str
    audio: np.ndarray  # (T * rate / FRAME_RATE,) float32, the real stem at the corpus's rate
    rate: int
    f0_hz: np.ndarray  # (T,) tracker f0, unvoiced frames held
    voiced: np.ndarray  # (T,) tracker voicing
    loudness_db: np.ndarray  # (T,)

    @property
    def hop(self) -> int:
        return self.rate // FRAME_RATE

    @cached_property
    def highband_db(self) -> float | None:
        return high_band_db(self.audio, self.rate)


def corpus_rate(root: Path, track: str) -> int:
    """The rate a track's stems were rendered at (its metadata's render record); 16 kHz, the
    cache's, for corpora from before the rate was a setting and for other layouts."""
    path = root / track / "metadata.yaml"
    meta = yaml.safe_load(path.read_text()) if path.is_file() else None
    render = meta.get("render") if isinstance(meta, dict) else None
    return int(render.get("sample_rate", SAMPLE_RATE)) if isinstance(render, dict) else SAMPLE_RATE


def held_out_excerpts(
    root: Path,
    instruments: list[str],
    n_excerpts: int,
    seconds: float,
    splits: tuple[str, ...] = ("test", "validation"),
) -> dict[str, tuple[str, list[Excerpt]]]:
    """Per instrument, its split and up to ``n_excerpts`` sounding excerpts (one per stem first,
    then more) of its stems in the first of ``splits`` that has any; each split's cache is read
    once for all instruments."""
    n_frames = int(seconds * FRAME_RATE)
    found: dict[str, tuple[str, list[Excerpt]]] = {}
    for split in splits:
        candidates: dict[str, list] = {n: [] for n in instruments if n not in found}
        if not candidates:
            break
        for track in iter_cached_tracks(root, split):
            for sid, arrays in track.stems.items():
                name = arrays["instrument"]
                if name in candidates:
                    starts = _sounding_starts(arrays, n_frames)
                    candidates[name].append([(track.track, sid, s, arrays) for s in starts])
        for name, stems in candidates.items():
            picked = []
            for rank in range(max((len(c) for c in stems), default=0)):
                picked += [c[rank] for c in stems if rank < len(c)]
            if picked:
                found[name] = split, _excerpts(root, name, picked[:n_excerpts], n_frames)
    return {n: found.get(n, ("none", [])) for n in instruments}


def _sounding_starts(arrays: dict, n_frames: int) -> list[int]:
    """Starts of non-overlapping excerpts of a stem that sound (above -60 dB) 60% of the time."""
    loud = np.asarray(arrays["loudness_db"], np.float32)
    if len(loud) < n_frames:
        return []
    active = np.concatenate([[0], np.cumsum(loud > ACTIVE_DB)])
    frac = (active[n_frames:] - active[:-n_frames]) / n_frames
    return [int(s) for s in np.flatnonzero(frac >= 0.6)[::n_frames]]


def _excerpts(
    root: Path, instrument: str, picked: list[tuple[str, str, int, dict]], n_frames: int
) -> list[Excerpt]:
    stems: dict[tuple[str, str], tuple[np.ndarray, int]] = {}  # each stem file read once
    excerpts = []
    for track, sid, start, arrays in picked:
        if (track, sid) not in stems:
            stems[track, sid] = _stem_audio(root, track, sid, arrays)
        excerpts.append(_excerpt(instrument, track, sid, arrays, start, n_frames, stems))
    return excerpts


def _stem_audio(root: Path, track: str, sid: str, arrays: dict) -> tuple[np.ndarray, int]:
    """A whole stem as float32 at the corpus's rate, and that rate."""
    rate = corpus_rate(root, track)
    pcm = arrays["audio"] if rate == SAMPLE_RATE else stem_audio_file(root, track, sid, rate)
    return np.asarray(pcm, np.float32) / 32768.0, rate


def _excerpt(
    instrument: str,
    track: str,
    sid: str,
    arrays: dict,
    start: int,
    n_frames: int,
    stems: dict[tuple[str, str], tuple[np.ndarray, int]],
) -> Excerpt:
    audio, rate = stems[track, sid]
    hop = rate // FRAME_RATE
    real = audio[start * hop : (start + n_frames) * hop]
    sl = slice(start, start + n_frames)
    voiced = np.asarray(arrays["confidence"][sl]) >= VOICED_THRESHOLD
    f0 = np.where(voiced, np.asarray(arrays["f0_tracked"][sl]), 0.0)
    return Excerpt(
        instrument,
        f"{track}/{sid}@{start / FRAME_RATE:.1f}s",
        np.pad(real, (0, n_frames * hop - len(real))),
        rate,
        fill_unvoiced_f0(f0),
        voiced,
        np.asarray(arrays["loudness_db"][sl], np.float32),
    )


def plain_synth(ex: Excerpt, drums: bool, n_harmonics: int, seed: int = 0) -> np.ndarray:
    """Equal-amplitude harmonics (or white noise for drums) at the excerpt's rate, gain-matched to
    the input loudness."""
    n, hop = len(ex.loudness_db), ex.hop
    if drums:
        raw = np.random.default_rng(seed).uniform(-1, 1, n * hop).astype(np.float32)
    else:
        f0 = torch.from_numpy(ex.f0_hz)[None]
        amps = harmonic_amplitudes(torch.ones(1, n), torch.ones(1, n, n_harmonics), f0, ex.rate)
        raw = harmonic_synth(f0, amps, hop, ex.rate)[0].numpy()
    # One loudness-matching pass: per-frame gain from the loudness difference, upsampled.
    loudness = a_weighted_loudness(resample(raw, ex.rate, SAMPLE_RATE))
    gain_db = np.clip(ex.loudness_db - loudness, -120, 60)
    gain = np.repeat(10 ** (gain_db / 20), hop)
    return (raw * np.convolve(gain, np.hanning(2 * hop) / hop, "same")).astype(np.float32)


def spectral_distance(output: np.ndarray, real: np.ndarray, rate: int) -> float:
    with torch.no_grad():
        return float(
            multiscale_spectral_loss(
                torch.from_numpy(output)[None], torch.from_numpy(real)[None], loss_fft_sizes(rate)
            )
        )


def high_band_db(audio: np.ndarray, rate: int) -> float | None:
    """Energy above 8 kHz over the total, in dB: -inf when nothing lies above 8 kHz (any signal
    at 16 kHz), None for silence."""
    power = np.abs(np.fft.rfft(np.asarray(audio, np.float64))) ** 2
    total = float(power.sum())
    if total <= 0:
        return None
    high = float(power[np.fft.rfftfreq(len(audio), 1 / rate) > HIGH_BAND_HZ].sum())
    return 10 * math.log10(high / total) if high > 0 else -math.inf


def _difference(a: float | None, b: float | None) -> float | None:
    """a - b in dB, infinite when only one is; None when undefined (both -inf, or missing)."""
    if a is None or b is None or (math.isinf(a) and a == b):
        return None
    return a - b


def metrics(output: np.ndarray, rate: int, ex: Excerpt, pitched: bool) -> dict[str, float | None]:
    """Scores of ``output`` (at ``rate``) against the excerpt: analysis at 16 kHz, spectral
    distance at the excerpt's rate, high-band share of the output at its own rate."""
    analysed = resample(output, rate, SAMPLE_RATE)
    loud_out = a_weighted_loudness(analysed)
    sounding = ex.loudness_db > ACTIVE_DB
    share = high_band_db(output, rate)
    result: dict[str, float | None] = {
        "loudness_l1_db": float(np.mean(np.abs(loud_out - ex.loudness_db)[sounding])),
        "spectral": spectral_distance(resample(output, rate, ex.rate), ex.audio, ex.rate),
        "highband_db": share,
        "highband_diff_db": _difference(share, ex.highband_db),
        "f0_cents": None,
        "voicing_kept": None,
    }
    if pitched:
        f0_out, conf_out = track_pitch(analysed)
        ref = ex.voiced & sounding
        both = ref & (conf_out >= VOICED_THRESHOLD)
        if ref.any():
            result["voicing_kept"] = float(both.sum() / ref.sum())
        if both.any():
            cents = 1200 * np.abs(np.log2(f0_out[both] / ex.f0_hz[both]))
            result["f0_cents"] = float(np.median(cents))
    return result


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def score(
    system: Callable[[Excerpt], np.ndarray], rate: int, excerpts: list[Excerpt], pitched: bool
) -> dict[str, float | None]:
    """Mean metrics of ``system`` (an excerpt → audio at ``rate``) over the excerpts."""
    rows = [metrics(system(ex), rate, ex, pitched) for ex in excerpts]
    return {k: _mean([r[k] for r in rows]) for k in KEYS}


def _renderer(inst: Instrument) -> Callable[[Excerpt], np.ndarray]:
    return lambda ex: inst.render(ex.f0_hz if inst.kind == "pitched" else None, ex.loudness_db)


def evaluate(inst: Instrument, excerpts: list[Excerpt], plain: dict) -> dict[str, Any]:
    """The decoder and its untrained twin on the excerpts, with the issue's bars."""
    pitched, rate = inst.kind == "pitched", inst.config.sample_rate
    torch.manual_seed(0)
    untrained = Instrument(inst.config, build_decoder(inst.config))
    dec = score(_renderer(inst), rate, excerpts, pitched)
    corpus = excerpts[0].rate  # a corpus is rendered at one rate
    bar = SPECTRAL_BAR if corpus <= SAMPLE_RATE else HIFI_SPECTRAL_BAR
    ratio = dec["spectral"] / plain["spectral"]
    passes = {
        "f0": dec["f0_cents"] is None or dec["f0_cents"] < F0_BAR_CENTS,
        "loudness": dec["loudness_l1_db"] < LOUDNESS_BAR_DB,
        "spectral": ratio <= bar,
    }
    if corpus > SAMPLE_RATE:
        diff = dec["highband_diff_db"]
        passes["high_band"] = diff is not None and abs(diff) <= HIGH_BAND_BAR_DB
    return {
        "sample_rate": rate,
        "decoder": dec,
        "untrained": score(_renderer(untrained), rate, excerpts, pitched),
        "spectral_vs_plain": ratio,
        "passes": passes,
    }


def evaluate_plain(excerpts: list[Excerpt], drums: bool, n_harmonics: int) -> dict:
    rate = excerpts[0].rate
    return score(lambda ex: plain_synth(ex, drums, n_harmonics), rate, excerpts, not drums)


def plain_harmonics(name: str, kind: str, rate: int, decoders: list[Instrument]) -> int:
    """Harmonics of the plain synth at ``rate``: those of a decoder that runs at it, else the
    default architecture's at that rate."""
    at_rate = [d.config.n_harmonics for d in decoders if d.config.sample_rate == rate]
    return at_rate[0] if at_rate else default_config(name, kind, rate).n_harmonics


def confusion_matrix(
    instruments: dict[str, Instrument],
    data: dict[str, tuple[str, list[Excerpt]]],
    diagonal: dict[str, float],
) -> list[list[float]]:
    """Mean spectral distance of decoder d (columns) resynthesising instrument r's excerpts (rows);
    the diagonal comes from the evaluation."""
    names = list(diagonal)

    def cell(real: str, d: str) -> float:
        if real == d:
            return diagonal[real]
        inst, excerpts = instruments[d], data[real][1]
        rate = inst.config.sample_rate
        outputs = [(resample(inst.render(ex.f0_hz, ex.loudness_db), rate, ex.rate), ex)
                   for ex in excerpts]  # fmt: skip
        return float(np.mean([spectral_distance(o, ex.audio, ex.rate) for o, ex in outputs]))

    return [[cell(real, d) for d in names] for real in names]


def _fmt(value: float | None, spec: str) -> str:
    width = int(spec.split(".")[0].lstrip("+"))
    return f"{'n/a':>{width}s}" if value is None else format(value, spec)


def _system_line(label: str, rate: int, m: dict, ratio: float | None) -> str:
    return (
        f"{label:19s} {rate / 1000:5.1f} {_fmt(m['f0_cents'], '6.1f')} "
        f"{_fmt(m['voicing_kept'], '6.2f')} {_fmt(m['loudness_l1_db'], '7.2f')} "
        f"{_fmt(m['spectral'], '8.3f')} {_fmt(ratio, '6.2f')} {_fmt(m['highband_db'], '7.1f')} "
        f"{_fmt(m['highband_diff_db'], '+7.1f')}"
    )


def print_instrument(name: str, entry: dict) -> None:
    """The detailed rows of one instrument: every system, the real stem's share, the bars."""
    plain = entry["plain"]
    print(f"{name} ({entry['split']}, {len(entry['excerpts'])} excerpts, "
          f"scored at {entry['sample_rate']} Hz)")  # fmt: skip
    print(f"  {'system':19s} {'kHz':>5s} {'f0 ¢':>6s} {'voiced':>6s} {'loud dB':>7s} "
          f"{'spectral':>8s} {'×plain':>6s} {'>8k dB':>7s} {'Δ dB':>7s}")  # fmt: skip
    for side in SIDES:
        result = entry.get(side)
        if result is None:
            continue
        prefix = "" if side == "checkpoints" else "baseline "
        for system in ("decoder", "untrained"):
            m = result[system]
            ratio = m["spectral"] / plain["spectral"]
            print("  " + _system_line(f"{prefix}{system}", result["sample_rate"], m, ratio))
        verdict = ", ".join(f"{k} {'ok' if v else 'FAIL'}" for k, v in result["passes"].items())
        print(f"  {'':19s} bar: {verdict}")
    print("  " + _system_line("plain", entry["sample_rate"], plain, 1.0))
    real = _fmt(entry["real_highband_db"], "7.1f")
    print(f"  {'real stem':19s} {entry['sample_rate'] / 1000:5.1f} {'':44s}{real}")


def print_summary(report: dict, roots: dict[str, Path | None]) -> None:
    """Both checkpoint roots side by side: spectral, × plain, high-band share and its difference
    from the real stem's, loudness L1, f0 error."""
    sides = [s for s in SIDES if s == "checkpoints" or roots[s] is not None]
    cols = f"{'kHz':>4s} {'spectral':>8s} {'×plain':>6s} {'>8k dB':>7s} {'Δ dB':>6s} " \
           f"{'loud':>5s} {'f0 ¢':>5s}"  # fmt: skip
    heads = [f"{s}: {roots.get(s) or 'checkpoints'}" for s in sides]
    print(f"\n{'':10s}" + " | ".join(f"{h[: len(cols)]:{len(cols)}s}" for h in heads))
    print(f"{'instrument':10s}" + " | ".join(cols for _ in sides))
    for name, entry in report["instruments"].items():
        cells = []
        for side in sides:
            r = entry.get(side)
            if r is None:
                cells.append(f"{'(none)':{len(cols)}s}")
                continue
            m, ratio = r["decoder"], r["spectral_vs_plain"]
            cells.append(
                f"{r['sample_rate'] / 1000:4.1f} {m['spectral']:8.3f} {ratio:6.2f} "
                f"{_fmt(m['highband_db'], '7.1f')} {_fmt(m['highband_diff_db'], '+6.1f')} "
                f"{m['loudness_l1_db']:5.2f} {_fmt(m['f0_cents'], '5.1f')}"
            )
        print(f"{name:10s}" + " | ".join(cells))


def print_confusion(names: list[str], confusion: list[list[float]]) -> list[bool]:
    print("\ntimbre confusion: mean spectral distance (rows: real stems, columns: decoders)")
    print(f"{'':12s}" + "".join(f"{d[:9]:>10s}" for d in names))
    for real, row in zip(names, confusion, strict=True):
        best = int(np.argmin(row))
        cells = "".join(f"{v:9.3f}{'*' if j == best else ' '}" for j, v in enumerate(row))
        print(f"{real:12s}{cells}")
    correct = [int(np.argmin(row)) == i for i, row in enumerate(confusion)]
    print(f"right decoder closest for {sum(correct)}/{len(correct)} instruments")
    return correct


def _strict(value: Any) -> Any:
    """``value`` with infinities as the strings "inf"/"-inf" and NaN as null (strict JSON)."""
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def load_checkpoints(root: Path | None, names: list[str]) -> dict[str, Instrument]:
    """The named instruments under ``root`` (default: the repo's checkpoints/); those without a
    checkpoint there are reported and left out."""
    available = set(list_pretrained(root))
    missing = [n for n in names if n not in available]
    if missing:
        print(f"no checkpoint under {root or 'checkpoints'} for {', '.join(missing)}")
    return {n: Instrument.from_pretrained(root / n if root else n) for n in names if n in available}


def evaluate_instrument(
    name: str, split: str, excerpts: list[Excerpt], sides: dict[str, Instrument]
) -> dict[str, Any]:
    """One instrument's report entry: the plain synth, the real stem's high-band share and each
    checkpoint root's decoder."""
    first = next(iter(sides.values()))
    rate = excerpts[0].rate
    n_harmonics = plain_harmonics(name, first.kind, rate, list(sides.values()))
    plain = evaluate_plain(excerpts, first.kind == "drums", n_harmonics)
    entry: dict[str, Any] = {
        "split": split,
        "excerpts": [e.label for e in excerpts],
        "sample_rate": rate,
        "real_highband_db": _mean([e.highband_db for e in excerpts]),
        "plain": plain | {"n_harmonics": None if first.kind == "drums" else n_harmonics},
    }
    for side, inst in sides.items():
        entry[side] = evaluate(inst, excerpts, plain)
    return entry


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="corpus root with cache/")
    parser.add_argument("--checkpoints", type=Path, help="checkpoint root (default checkpoints/)")
    parser.add_argument(
        "--baseline", type=Path, help="a second checkpoint root evaluated on the same excerpts"
    )
    parser.add_argument("--instruments", nargs="+", help="default: every checkpoint")
    parser.add_argument(
        "--split", choices=("test", "validation"), help="default: test, else validation"
    )
    parser.add_argument("--excerpts", type=int, default=6, help="excerpts per instrument")
    parser.add_argument("--seconds", type=float, default=8.0, help="excerpt length")
    parser.add_argument("--json", type=Path, help="write all results here")
    parser.add_argument("--examples", type=Path, help="write real/decoder/plain wav files here")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (2 thrash on a busy 2-core machine)"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    names = args.instruments or list_pretrained(args.checkpoints)
    roots = {"checkpoints": args.checkpoints, "baseline": args.baseline}
    loaded = {"checkpoints": load_checkpoints(args.checkpoints, names)}
    if args.baseline is not None:
        loaded["baseline"] = load_checkpoints(args.baseline, names)
    instruments = loaded["checkpoints"]
    splits = (args.split,) if args.split else ("test", "validation")
    data = held_out_excerpts(args.data, list(instruments), args.excerpts, args.seconds, splits)
    report: dict[str, Any] = {
        "roots": {k: None if v is None else str(v) for k, v in roots.items()},
        "instruments": {},
        "bar": {
            "f0_cents": F0_BAR_CENTS,
            "loudness_l1_db": LOUDNESS_BAR_DB,
            "spectral_vs_plain": {"16000": SPECTRAL_BAR, "above": HIFI_SPECTRAL_BAR},
            "highband_diff_db": HIGH_BAND_BAR_DB,
        },
    }
    for name in instruments:
        split, excerpts = data[name]
        if not excerpts:
            print(f"{name}: no held-out stems in the cache")
            continue
        sides = {s: loaded[s][name] for s in loaded if name in loaded[s]}
        entry = evaluate_instrument(name, split, excerpts, sides)
        report["instruments"][name] = entry
        print_instrument(name, entry)
        if args.examples:
            _write_examples(args.examples, name, sides, excerpts[0], entry["plain"]["n_harmonics"])
    print_summary(report, roots)
    diagonal = {
        n: e["checkpoints"]["decoder"]["spectral"] for n, e in report["instruments"].items()
    }
    confusion = confusion_matrix(instruments, data, diagonal)
    correct = print_confusion(list(diagonal), confusion)
    report["confusion"] = {
        "instruments": list(diagonal),
        "distance": confusion,
        "diagonal_dominant": all(correct),
    }
    report["seconds"] = round(time.perf_counter() - began, 1)
    print(f"finished in {report['seconds']:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(_strict(report), indent=2, allow_nan=False) + "\n")
        print(f"wrote {args.json}")


def _write_examples(
    folder: Path, name: str, sides: dict[str, Instrument], ex: Excerpt, n_harmonics: int | None
) -> None:
    """The first 4 s of one excerpt: real stem and plain synth at the corpus's rate, each
    checkpoint root's decoder at its own."""
    from ensemble.audio import write_audio

    cut = min(len(ex.loudness_db), 4 * FRAME_RATE)
    short = Excerpt(ex.instrument, ex.label, ex.audio[: cut * ex.hop], ex.rate, ex.f0_hz[:cut],
                    ex.voiced[:cut], ex.loudness_db[:cut])  # fmt: skip
    drums = next(iter(sides.values())).kind == "drums"
    folder.mkdir(parents=True, exist_ok=True)
    write_audio(folder / f"{name}_real.wav", short.audio, ex.rate)
    write_audio(folder / f"{name}_plain.wav", plain_synth(short, drums, n_harmonics or 0), ex.rate)
    for side, inst in sides.items():
        label = "decoder" if side == "checkpoints" else "baseline"
        write_audio(folder / f"{name}_{label}.wav", _renderer(inst)(short), inst.config.sample_rate)


if __name__ == "__main__":
    main()
