"""Training-ready feature cache: one compressed ``ROOT/cache/<track>.npz`` per track.

Each stem's arrays are stored under ``"<stem>/<field>"``:
  audio (N,) int16 at 16 kHz, f0_truth (T,) ground-truth f0 in Hz (MIDI, annotation or tracker,
  see f0_source), f0_tracked (T,) and confidence (T,) from `ensemble.features.track_pitch`,
  loudness_db (T,), rms (T,), chroma (12, T) — all float32 on the project frame grid;
and ``"__meta__"`` holds JSON: track, split, layout and per stem instrument, role, is_drum,
f0_source. Decoder training, the conductor and the RAG index read these files instead of
recomputing features. Building is resumable: tracks whose file exists are kept.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ensemble.data import list_tracks, load_track_stems
from ensemble.data.example import StemExample, TrackRef, warn_skip
from ensemble.data.splits import check_split
from ensemble.errors import DataError

CACHE_DIR = "cache"
META_KEY = "__meta__"
ARRAY_FIELDS = ("audio", "f0_truth", "f0_tracked", "confidence", "loudness_db", "rms", "chroma")
STEM_FIELDS = ("instrument", "role", "is_drum", "f0_source")
RENAMED = {"f0_midi": "f0_truth"}  # caches written before the field said what it holds (Hz)


@dataclass
class TrackFeatures:
    """Cached features of one track: ``stems[stem]`` maps ARRAY_FIELDS to arrays and
    STEM_FIELDS to values."""

    track: str
    split: str | None
    stems: dict[str, dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class CacheReport:
    """Outcome of `build_cache`."""

    cache_dir: Path
    written: int
    kept: int
    skipped: list[str]  # malformed tracks (each also warned about)


def cache_dir_for(root: str | Path, cache_dir: str | Path | None = None) -> Path:
    return Path(cache_dir) if cache_dir is not None else Path(root) / CACHE_DIR


def stem_arrays(example: StemExample) -> dict[str, np.ndarray]:
    """The cached arrays of one audio stem (ARRAY_FIELDS). Drum stems skip the pitch tracker
    (their f0_tracked and confidence are zeros): it costs most of the time and means nothing."""
    from ensemble.features import chroma_features, extract_features, rms_envelope

    audio = np.asarray(example.audio, np.float32)
    n = len(example.f0_hz)
    if example.is_drum:
        f0_tracked = confidence = np.zeros(n, np.float32)
        rms, chroma = rms_envelope(audio)[:n], chroma_features(audio)[:, :n]
    else:
        features = extract_features(audio)
        f0_tracked, confidence = features.f0_hz[:n], features.confidence[:n]
        rms, chroma = features.rms[:n], features.chroma[:, :n]
    return {
        "audio": np.round(np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16),
        "f0_truth": example.f0_hz.astype(np.float32),
        "f0_tracked": f0_tracked,
        "confidence": confidence,
        "loudness_db": example.loudness_db.astype(np.float32),
        "rms": rms,
        "chroma": chroma,
    }


def _cache_one(ref: TrackRef, out: Path) -> str | None:
    """Write one track's npz (atomically); returns the reason when the track is malformed."""
    try:
        stems = load_track_stems(ref)
    except DataError as exc:
        return str(exc)
    if any(s.audio is None for s in stems):
        return "it has no audio to cache"
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"track": ref.track, "split": ref.split, "layout": ref.layout}
    meta["stems"] = {}
    for example in stems:
        for name, values in stem_arrays(example).items():
            arrays[f"{example.stem}/{name}"] = values
        meta["stems"][example.stem] = {k: getattr(example, k) for k in STEM_FIELDS}
    arrays[META_KEY] = np.array(json.dumps(meta))
    partial = out / f".{ref.track}.partial.npz"
    np.savez_compressed(partial, **arrays)
    os.replace(partial, out / f"{ref.track}.npz")
    return None


def _run(todo: list[TrackRef], out: Path, workers: int) -> Iterator[tuple[TrackRef, str | None]]:
    if workers <= 1:
        for ref in todo:
            yield ref, _cache_one(ref, out)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [(ref, pool.submit(_cache_one, ref, out)) for ref in todo]
        for ref, future in futures:
            yield ref, future.result()


def build_cache(
    root: str | Path,
    *,
    workers: int = 2,
    split: str | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> CacheReport:
    """Cache every track of a Slakh-layout or URMP dataset.

    Args:
        root: dataset folder (see `ensemble.data.detect_layout`).
        workers: parallel processes (1 runs in this process).
        split: only tracks of this split.
        cache_dir: where the npz files go (default ``root/cache``, e.g. elsewhere for a
            read-only dataset).
        progress: show a tqdm bar.

    Raises:
        DataError: the folder holds no audio dataset, or the cache folder cannot be created.
    """
    from tqdm import tqdm

    from ensemble.data import detect_layout

    layout = detect_layout(root)
    if layout == "symbolic":
        raise DataError(f"'{root}' holds scores without audio; the cache stores audio features.")
    out = cache_dir_for(root, cache_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"Cannot create the cache folder '{out}' ({exc.strerror}).") from exc
    refs = list_tracks(root, split, layout)
    todo = [r for r in refs if not (out / f"{r.track}.npz").is_file()]
    skipped: list[str] = []
    bar = tqdm(total=len(todo), desc="caching", unit="track", disable=not progress)
    for ref, problem in _run(todo, out, workers):
        bar.update(1)
        if problem is not None:
            warn_skip(ref.track, problem)
            skipped.append(ref.track)
    bar.close()
    return CacheReport(out, len(todo) - len(skipped), len(refs) - len(todo), skipped)


def stem_field(data: Any, stem: str, name: str) -> np.ndarray:
    """``stem``'s array ``name`` from an open cache npz, under its current or its former name."""
    key = f"{stem}/{name}"
    if key not in data.files:
        key = f"{stem}/" + next((old for old, new in RENAMED.items() if new == name), name)
    return data[key]


def load_track(
    root: str | Path, track: str, *, cache_dir: str | Path | None = None
) -> TrackFeatures:
    """Cached features of one track.

    Raises:
        DataError: the track is not cached or its file is corrupt.
    """
    path = cache_dir_for(root, cache_dir) / f"{track}.npz"
    if not path.is_file():
        raise DataError(
            f"Track '{track}' is not cached in '{path.parent}'; run "
            f"'python -m ensemble corpus cache {root}' first."
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data[META_KEY]))
            stems: dict[str, dict[str, Any]] = {
                stem: dict(info) for stem, info in meta["stems"].items()
            }
            for key in data.files:
                if key != META_KEY:
                    stem, name = key.split("/", 1)
                    stems[stem][RENAMED.get(name, name)] = data[key]
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise DataError(
            f"Cache file '{path}' is corrupt ({exc}); delete it and run the cache again."
        ) from exc
    return TrackFeatures(meta["track"], meta.get("split"), stems, meta)


def iter_cached_tracks(
    root: str | Path, split: str | None = None, *, cache_dir: str | Path | None = None
) -> Iterator[TrackFeatures]:
    """Every cached track (of `split`, when given), in track order."""
    check_split(split)
    folder = cache_dir_for(root, cache_dir)
    for path in sorted(folder.glob("*.npz")):
        if path.name.startswith("."):
            continue  # an interrupted write
        if split is not None:
            with np.load(path, allow_pickle=False) as data:
                if json.loads(str(data[META_KEY])).get("split") != split:
                    continue
        yield load_track(root, path.stem, cache_dir=cache_dir)
