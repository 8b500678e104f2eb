"""Do performed stems sound like the instruments they were asked to be?

Usage: python bench/timbre.py [--data data/corpus_hifi]
                              [--instruments violin,viola,cello,bass,drums]

A timbre profile of each instrument = the mean log-mel spectrum (64 bands, per-frame level
removed) of its real train-split stems in the corpus cache (16 kHz). Every shipped example in
examples/ is performed with the line-up; each output stem (resampled from the decoders' rate)
is labelled with the instrument whose profile is nearest (L1). Prints the confusion table and
the share of stems labelled as asked, with a baseline in the same run: the plain harmonic synth
(equal harmonic amplitudes) playing the same parts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ensemble.audio import load_audio, resample
from ensemble.config import HOP_LENGTH, SAMPLE_RATE
from ensemble.data.cache import iter_cached_tracks
from ensemble.mix import downmix
from ensemble.perform import Ensemble

N_MELS = 64
SOUNDING_DB = -50.0


def profile(audio: np.ndarray) -> np.ndarray | None:
    """(N_MELS,) mean log-mel shape over sounding frames, per-frame level removed."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=audio, sr=SAMPLE_RATE, n_fft=1024, hop_length=HOP_LENGTH, n_mels=N_MELS, fmax=8000
    )
    db = librosa.power_to_db(mel + 1e-10)
    frames = db[:, db.max(axis=0) > SOUNDING_DB + db.max()]
    if frames.shape[1] < 10:
        return None
    return (frames - frames.mean(axis=0, keepdims=True)).mean(axis=1)


def plain_synth(f0_hz: np.ndarray, loudness_db: np.ndarray) -> np.ndarray:
    """Equal-amplitude harmonics below Nyquist, level from the loudness control."""
    f0 = np.repeat(np.maximum(f0_hz, 1.0), HOP_LENGTH)
    amp = np.repeat(10 ** (loudness_db / 20), HOP_LENGTH)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    k = np.arange(1, 31)[:, None]
    harmonics = np.sin(k * phase) * (k * f0 < SAMPLE_RATE / 2)
    return (amp * harmonics.sum(axis=0) / 30).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="data/corpus_hifi", help="corpus with its cache/")
    parser.add_argument("--instruments", default="violin,viola,cello,bass,drums")
    parser.add_argument("--json", default="artifacts/bench/timbre.json")
    args = parser.parse_args()
    names = args.instruments.split(",")
    real: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for track in iter_cached_tracks(Path(args.data), "train"):
        for stem in track.stems.values():
            if stem["instrument"] in real and len(real[stem["instrument"]]) < 12:
                p = profile(stem["audio"].astype(np.float32) / 32767)
                if p is not None:
                    real[stem["instrument"]].append(p)
    profiles = {n: np.mean(v, axis=0) for n, v in real.items() if v}
    if not profiles:
        raise SystemExit(f"No cached train-split stems of {names} under {args.data}: run "
                         f"`python -m ensemble corpus cache {args.data}` first.")

    def label(audio: np.ndarray) -> str | None:
        p = profile(audio)
        if p is None:
            return None
        return min(profiles, key=lambda n: float(np.abs(profiles[n] - p).mean()))

    ensemble = Ensemble.from_pretrained()
    rows = []
    for path in sorted(Path("examples").glob("*.wav")):
        perf = ensemble.perform(load_audio(path), names)
        for name, stem in perf.stems.items():
            part = perf.parts[name]
            plain = None if part.f0_hz is None else label(plain_synth(part.f0_hz, part.loudness_db))
            rows.append(
                {"input": path.name, "asked": name, "plain": plain,
                 "decoder": label(resample(downmix(stem), perf.sample_rate, SAMPLE_RATE))}
            )
    scored = [r for r in rows if r["decoder"] is not None]
    pitched = [r for r in scored if r["plain"] is not None]
    decoder_ok = sum(r["decoder"] == r["asked"] for r in scored) / max(len(scored), 1)
    plain_ok = sum(r["plain"] == r["asked"] for r in pitched) / max(len(pitched), 1)
    decoder_pitched = sum(r["decoder"] == r["asked"] for r in pitched) / max(len(pitched), 1)
    print(f"{'input':24s} {'asked':8s} {'decoder sounds like':20s} plain synth sounds like")
    for r in rows:
        print(
            f"{r['input']:24s} {r['asked']:8s} {r['decoder'] or '(silent)':20s} {r['plain'] or '-'}"
        )
    print(
        f"stems labelled as asked: decoders {decoder_ok:.0%} of {len(scored)}; pitched only: "
        f"decoders {decoder_pitched:.0%} vs plain synth {plain_ok:.0%} of {len(pitched)}"
    )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(
        json.dumps(
            {
                "rows": rows,
                "decoder_accuracy": decoder_ok,
                "pitched_decoder_accuracy": decoder_pitched,
                "pitched_plain_accuracy": plain_ok,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
