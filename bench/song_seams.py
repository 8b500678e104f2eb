"""Clicks at a grown song's seams, against the rest of the same song.

Usage: python bench/song_seams.py [--input examples/folk_flute.wav] [--index examples/index]
                                  [--sections 4] [--out DIR]

Runs `python -m ensemble song grow` as a user would, then reads `song.wav` and `song.json` and,
at every seam (where a section starts), measures
- the largest sample-to-sample jump within 5 ms of it, against the song's 99.9th percentile of
  jumps (a click is a jump the music around it never makes), and
- the spectral flux (positive change of the 2048-point magnitude spectrum, hop 512) of the frames
  around it, against the song's 95th and 99th percentiles of flux (a seam may land on a note's
  start, which is where flux is high anyway).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

N_FFT, HOP = 2048, 512


def spectral_flux(mono: np.ndarray) -> np.ndarray:
    """(F,) flux of each frame (frame f starts at sample f * HOP)."""
    frames = np.lib.stride_tricks.sliding_window_view(mono, N_FFT)[::HOP]
    magnitude = np.abs(np.fft.rfft(frames * np.hanning(N_FFT), axis=1))
    flux = np.zeros(len(magnitude))
    flux[1:] = np.maximum(np.diff(magnitude, axis=0), 0.0).sum(axis=1)
    return flux


def seam_measures(audio: np.ndarray, rate: int, seams_s: list[float]) -> dict:
    mono = audio.mean(axis=1) if audio.ndim == 2 else audio
    jumps = np.abs(np.diff(mono))
    flux = spectral_flux(mono)
    near = int(0.005 * rate)
    rows = []
    for seam in seams_s:
        at = round(seam * rate)
        frames = slice(max(0, (at - N_FFT) // HOP), (at + N_FFT) // HOP + 1)  # windows over it
        rows.append({
            "seam_s": seam,
            "jump": float(jumps[max(0, at - near) : at + near].max()),
            "flux": float(flux[frames].max()),
        })  # fmt: skip
    return {
        "seams": rows,
        "jump_p999": float(np.percentile(jumps, 99.9)),
        "flux_p95": float(np.percentile(flux, 95)),
        "flux_p99": float(np.percentile(flux, 99)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", default="examples/folk_flute.wav")
    parser.add_argument("--index", default="examples/index")
    parser.add_argument("--sections", type=int, default=4)
    parser.add_argument("--out", type=Path, help="where the song goes (default: a temp dir)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="song-seams-")) / "song"
    subprocess.run([sys.executable, "-m", "ensemble", "song", "grow", args.input, "--index",
                    args.index, "--sections", str(args.sections), "--out", str(out)],
                   check=True)  # fmt: skip
    song = json.loads((out / "song.json").read_text())
    audio, rate = sf.read(out / "song.wav", dtype="float32")
    seams = [section["song_start_s"] for section in song["sections"]]
    report = seam_measures(audio, rate, seams)
    print(f"{len(audio) / rate:.1f} s song ({song['input_seconds']:g} s input + "
          f"{len(seams)} sections), {rate} Hz")
    for row in report["seams"]:
        print(f"  seam at {row['seam_s']:5.1f} s: jump {row['jump']:.3f} "
              f"(song 99.9th pct {report['jump_p999']:.3f}), flux {row['flux']:.0f} "
              f"(95th {report['flux_p95']:.0f}, 99th {report['flux_p99']:.0f})")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
