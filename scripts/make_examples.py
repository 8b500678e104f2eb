"""Re-make everything under examples/ that the shipped models produce (after a retrain).

    .venv/bin/python scripts/make_examples.py [--skip-index] [--skip-resynthesis]

1. `examples/index`: rebuilt from `examples/rag_corpus` (its embedder is the shipped violin, so a
   new violin checkpoint needs a new index);
2. `examples/outputs/`: the performances, continuation and song listed in examples/README.md, as
   Ogg Vorbis (small enough to commit), at the rate the decoders render;
3. `examples/resynthesis/`: real / decoder / plain triples of held-out stems as Ogg Vorbis
   (`bench/fidelity.py --examples`, which needs a rendered corpus with its cache; skipped with
   a note when absent).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
GIVEN = Path("examples")  # as the CLI is given it (run from ROOT): song.json keeps no local path
BAND = "violin,viola,cello,bass,drums"


def cli(*args: str) -> None:
    print("+ python -m ensemble", " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "ensemble", *args], cwd=ROOT, check=True)


def to_ogg(wav: Path, out: Path) -> None:
    audio, rate = sf.read(wav, dtype="float32")
    sf.write(out, audio, rate, format="OGG", subtype="VORBIS")


def outputs(tmp: Path) -> None:
    out = EXAMPLES / "outputs"
    flute, index = str(GIVEN / "folk_flute.wav"), str(GIVEN / "index")
    for name, instruments in (("folk_flute", BAND), ("quartet_mix_timgm", BAND),
                              ("folk_flute", "violin,cello,flute,drums")):  # fmt: skip
        folder = tmp / f"{name}_{instruments}"
        cli("perform", str(GIVEN / f"{name}.wav"), "--instruments", instruments,
            "--out", str(folder), "--midi")  # fmt: skip
        to_ogg(folder / "mix.wav", out / f"{name}__{instruments.replace(',', '_')}.ogg")
        if name == "folk_flute" and instruments == BAND:
            shutil.copy(folder / "arrangement.mid", out / "folk_flute__arrangement.mid")
    cli("continue", flute, "--index", index, "--top-k", "5",
        "--instruments", "violin,cello,bass,drums", "--out", str(tmp / "continue"))  # fmt: skip
    to_ogg(tmp / "continue" / "continuation_01.wav", out / "folk_flute__continuation_rank1.ogg")
    cli("song", "grow", flute, "--index", index, "--sections", "4",
        "--out", str(tmp / "song"))  # fmt: skip
    to_ogg(tmp / "song" / "song.wav", out / "folk_flute__song_4_sections.ogg")
    shutil.copy(tmp / "song" / "song.mid", out / "folk_flute__song.mid")
    shutil.copy(tmp / "song" / "song.json", out / "folk_flute__song.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-index", action="store_true")
    parser.add_argument("--skip-resynthesis", action="store_true")
    parser.add_argument("--corpus", type=Path, default=ROOT / "data" / "corpus_hifi",
                        help="rendered corpus with cache/ for the resynthesis triples")  # fmt: skip
    args = parser.parse_args()
    if not args.skip_index:  # the new index replaces the old one atomically
        cli("index", "build", str(EXAMPLES / "rag_corpus"), "--out", str(EXAMPLES / "index"))
    with tempfile.TemporaryDirectory() as tmp:
        outputs(Path(tmp))
    if args.skip_resynthesis:
        return
    if not (args.corpus / "cache").is_dir():
        print(f"no cache under {args.corpus}: resynthesis examples kept as they are")
        return
    folder = EXAMPLES / "resynthesis"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "bench/fidelity.py", "--data", str(args.corpus),
                        "--excerpts", "1", "--examples", tmp], cwd=ROOT, check=True)  # fmt: skip
        for old in folder.glob("*.*"):
            old.unlink()
        for wav in sorted(Path(tmp).glob("*.wav")):  # Ogg Vorbis: 44.1 kHz wavs are large
            to_ogg(wav, folder / f"{wav.stem}.ogg")


if __name__ == "__main__":
    main()
