"""Training packs: a feature cache shrunk to travel to a remote GPU machine, and unpacked there.

A full cache (int16 audio + float32 features for every stem) is hundreds of MB; a GPU lease takes a
few tens. A pack keeps exactly what training reads:

- ``decoders/``: stems of the requested instruments, up to a budget of seconds each per split,
  with audio as FLAC (lossless, about half of int16) and their frame features;
- ``conductor/``: every track without audio; the leader's features and the followers' note and
  loudness targets as float16 (the conductor never reads follower audio, chroma or RMS).

`unpack` restores a regular cache (``<out>/decoders/cache``, ``<out>/conductor/cache``) that
`ensemble.data.cache.iter_cached_tracks` reads unchanged.
"""

from __future__ import annotations

import io
import json
import shutil
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ensemble.config import SAMPLE_RATE
from ensemble.data.cache import CACHE_DIR, META_KEY, cache_dir_for, stem_field
from ensemble.errors import DataError

LEADER_FIELDS = ("f0_truth", "f0_tracked", "confidence", "loudness_db", "rms", "chroma")
FOLLOWER_FIELDS = ("f0_truth", "loudness_db")
DECODER_FIELDS = ("f0_truth", "f0_tracked", "confidence", "loudness_db")
FLAC_SUFFIX = "audio_flac"


@dataclass
class PackReport:
    out: Path
    seconds: dict[str, dict[str, float]]  # split -> instrument -> seconds of audio packed
    bytes: int


def _flac_bytes(audio: np.ndarray) -> np.ndarray:
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return np.frombuffer(buffer.getvalue(), np.uint8)


def _flac_audio(data: np.ndarray) -> np.ndarray:
    import soundfile as sf

    audio, _ = sf.read(io.BytesIO(data.tobytes()), dtype="int16")
    return audio


def pack(
    roots: str | Path | Sequence[str | Path],
    out: str | Path,
    instruments: Sequence[str],
    *,
    seconds: dict[str, float] | None = None,
) -> PackReport:
    """Pack the caches of one or more corpus ``roots`` into ``out`` (see module docstring).

    Args:
        roots: corpus folders with ``cache/``; with several, file names are prefixed by the
            folder name so tracks of different corpora cannot collide.
        instruments: instruments whose audio the decoders need.
        seconds: audio budget per instrument for each split, default
            ``{"train": 150, "validation": 20}``; whole stems are taken in track order until the
            budget is reached.
    """
    budget = seconds or {"train": 150.0, "validation": 20.0}
    roots = [Path(roots)] if isinstance(roots, str | Path) else [Path(r) for r in roots]
    out = Path(out)
    (out / "decoders").mkdir(parents=True, exist_ok=True)
    (out / "conductor").mkdir(parents=True, exist_ok=True)
    used: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for filename, path in _cache_files(roots):
        _pack_track(path, out, filename, set(instruments), budget, used)
    merged = _merged_splits(roots)
    for part in ("decoders", "conductor"):
        (out / part / "splits.json").write_text(json.dumps(merged, indent=1))
    size = sum(p.stat().st_size for p in out.rglob("*.npz"))
    return PackReport(out, {k: dict(v) for k, v in used.items()}, size)


def _prefix(root: Path, roots: list[Path]) -> str:
    # with several corpora, names carry their folder so tracks of different ones cannot collide
    return f"{root.name}_" if len(roots) > 1 else ""


def _cache_files(roots: list[Path]) -> list[tuple[str, Path]]:
    """(packed file name, cache file) of every cached track of ``roots``."""
    paths: list[tuple[str, Path]] = []
    for root in roots:
        src = cache_dir_for(root)
        found = sorted(p for p in src.glob("*.npz") if not p.name.startswith("."))
        if not found:
            raise DataError(f"No feature cache in '{src}'; run 'python -m ensemble corpus cache'.")
        paths += [(_prefix(root, roots) + p.name, p) for p in found]
    return paths


def _pack_track(path: Path, out: Path, filename: str, wanted: set[str],
                budget: dict[str, float], used: dict[str, dict[str, float]]) -> None:  # fmt: skip
    """Write one track's conductor features and, within ``budget``, its decoders' stems."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data[META_KEY]))
        split = meta.get("split")
        conductor: dict[str, np.ndarray] = {META_KEY: data[META_KEY]}
        decoder: dict[str, np.ndarray] = {}
        decoder_stems = {}
        for stem, info in meta["stems"].items():
            fields = LEADER_FIELDS if info.get("role") == "leader" else FOLLOWER_FIELDS
            for field in fields:
                conductor[f"{stem}/{field}"] = stem_field(data, stem, field).astype(np.float16)
            instrument = info["instrument"]
            if instrument in wanted and used[split][instrument] < budget.get(split, 0.0):
                used[split][instrument] += len(data[f"{stem}/audio"]) / SAMPLE_RATE
                decoder[f"{stem}/{FLAC_SUFFIX}"] = _flac_bytes(data[f"{stem}/audio"])
                for field in DECODER_FIELDS:
                    decoder[f"{stem}/{field}"] = stem_field(data, stem, field).astype(np.float16)
                decoder_stems[stem] = info
    np.savez_compressed(out / "conductor" / filename, **conductor)
    if decoder_stems:
        decoder[META_KEY] = np.array(json.dumps({**meta, "stems": decoder_stems}))
        np.savez_compressed(out / "decoders" / filename, **decoder)


def _merged_splits(roots: list[Path]) -> dict[str, list[str]]:
    """The roots' splits.json merged (the trainers check it; each track also carries its split)."""
    merged: dict[str, list[str]] = defaultdict(list)
    for root in roots:
        splits = root / "splits.json"
        if splits.is_file():
            for split, tracks in json.loads(splits.read_text()).items():
                merged[split] += [_prefix(root, roots) + t for t in tracks]
    return merged


def unpack(pack_dir: str | Path, out: str | Path) -> Path:
    """Restore ``pack_dir`` into regular caches ``out/{decoders,conductor}/cache``; returns out."""
    pack_dir, out = Path(pack_dir), Path(out)
    for part in ("decoders", "conductor"):
        target = out / part / CACHE_DIR
        target.mkdir(parents=True, exist_ok=True)
        if (pack_dir / part / "splits.json").is_file():
            shutil.copy(pack_dir / part / "splits.json", out / part / "splits.json")
        for path in sorted((pack_dir / part).glob("*.npz")):
            arrays: dict[str, np.ndarray] = {}
            with np.load(path, allow_pickle=False) as data:
                for key in data.files:
                    if key == META_KEY:
                        arrays[key] = data[key]
                    elif key.endswith(FLAC_SUFFIX):
                        arrays[key.replace(FLAC_SUFFIX, "audio")] = _flac_audio(data[key])
                    else:
                        arrays[key] = data[key].astype(np.float32)
            np.savez(target / path.name, **arrays)
    return out
