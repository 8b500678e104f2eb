"""On-disk layout of a RAG index and its atomic, append-friendly versions.

    INDEX/
      CURRENT                  name of the live version (replaced atomically with os.replace)
      LOCK                     held (flock) by the one build that may write here
      v-000002/
        config.json            feature config, vector-index settings, part list
        centre.npy             (K,) centre of the raw style descriptors (fixed by the first build)
        files.json             one record per indexed file (global order)
        vectors.faiss          stage-1 vector index over all chunks
        part-000/ part-001/    one per build or --add: chunks.npz (per-chunk arrays),
                               context.npy (P, S, d) float16 style vectors, vectors.npy (N, d)

One build at a time: a second build into the same folder is refused while the first holds LOCK
(the lock goes with its process, so a killed build never leaves the folder locked). A build
writes a complete new version beside the live one and only then points CURRENT at it, so a
crash at any moment leaves the previous version readable. Parts are immutable: a new version
hard-links the parts it keeps instead of copying them.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ensemble.errors import EnsembleError, IndexMismatchError
from ensemble.rag.chunks import FeatureConfig, FileChunks, Seams, style_vectors

FORMAT_VERSION = 1
CURRENT = "CURRENT"
CONFIG_FILE = "config.json"
FILES_FILE = "files.json"
VECTORS_FILE = "vectors.faiss"
CENTRE_FILE = "centre.npy"
LOCK_FILE = "LOCK"


@dataclass
class FileRecord:
    """One indexed file. ``path`` is relative to the index folder when possible, so a corpus and
    its index can move together."""

    name: str
    path: str
    split: str | None
    duration_s: float
    sha256: str
    n_chunks: int


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise IndexMismatchError(
            f"The index file '{path}' is missing or corrupt ({exc.__class__.__name__}); rebuild "
            "the index with `python -m ensemble index build`."
        ) from exc


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


@contextmanager
def build_lock(root: Path) -> Iterator[None]:
    """Hold the index folder's build lock, or refuse at once when another build holds it."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EnsembleError(
                f"Another `index build` is writing to '{root}' right now; wait until it finishes "
                "(the index stays usable meanwhile), then run this one again."
            ) from None
        yield
    finally:
        os.close(fd)  # releases the lock


def live_version(root: Path) -> Path | None:
    """The live version folder of an index, or None when ``root`` holds no index yet."""
    pointer = root / CURRENT
    if not pointer.is_file():
        return None
    version = root / pointer.read_text().strip()
    if not version.is_dir():
        raise IndexMismatchError(
            f"The index at '{root}' points to a missing version '{version.name}'; rebuild it."
        )
    return version


def new_version_dir(root: Path) -> Path:
    """A fresh, not yet live, version folder (``v-NNNNNN.partial``)."""
    existing = [int(p.name[2:8]) for p in root.glob("v-*") if p.name[2:8].isdigit()]
    path = root / f"v-{max(existing, default=0) + 1:06d}.partial"
    path.mkdir(parents=True)
    return path


def publish(root: Path, partial: Path) -> Path:
    """Make a finished version live atomically, then drop older and abandoned versions."""
    final = partial.with_name(partial.name.removesuffix(".partial"))
    partial.rename(final)
    tmp = root / f"{CURRENT}.tmp"
    tmp.write_text(final.name + "\n")
    os.replace(tmp, root / CURRENT)  # the single atomic step
    for old in root.glob("v-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def link_part(src: Path, dst: Path) -> None:
    """Reuse an immutable part in a new version: hard links, or a copy across file systems."""
    dst.mkdir()
    for item in src.iterdir():
        try:
            os.link(item, dst / item.name)
        except OSError:
            shutil.copy2(item, dst / item.name)


def write_part(
    path: Path,
    files: list[FileChunks],
    file_offset: int,
    centre: np.ndarray,
    config: FeatureConfig,
) -> None:
    """Write the chunks of some (at least one) files as one part.

    File indices are global (``file_offset`` + position); context rows are local to the part.
    Raw context descriptors are stored as style vectors centred on ``centre`` (K,).
    """
    path.mkdir()
    offsets = np.cumsum([0] + [len(f.context) for f in files])[:-1]
    ctx_start = np.concatenate([f.ctx_start + o for f, o in zip(files, offsets, strict=True)])
    context = style_vectors(np.concatenate([f.context for f in files]), centre, config)
    np.savez(
        path / "chunks.npz",
        file_index=np.concatenate(
            [np.full(len(f.start_s), file_offset + i, np.int32) for i, f in enumerate(files)]
        ),
        start_s=np.concatenate([f.start_s for f in files]),
        ctx_start=ctx_start,
        ctx_end=np.concatenate([f.ctx_end + o for f, o in zip(files, offsets, strict=True)]),
        **Seams.concat([f.seams for f in files]).arrays(),
    )
    np.save(path / "context.npy", context.astype(np.float16))
    np.save(path / "vectors.npy", combined_vectors(context, ctx_start))


def combined_vectors(context: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(N, d) float32 stage-1 vectors: the unit mean over lookback scales of each chunk's context.

    One vector per chunk keeps the approximate index S times smaller; the per-scale detail is
    used in the exact rerank.
    """
    mean = context[rows].astype(np.float32).mean(axis=1)
    return mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-9)
