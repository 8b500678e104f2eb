"""A RAG index opened for queries: chunk table, style vectors and the stage-1 vector index.

Stage 1 is FAISS: exact inner product (IndexFlatIP) up to FLAT_MAX chunks, where a scan still
costs a few ms; above that an inverted file (IndexIVFFlat, ~sqrt(N) lists, NPROBE probed) whose
query cost grows ~sqrt(N). sqrt(N) rather than FAISS's suggested 4-16·sqrt(N) lists keeps k-means
training at 10^6 chunks to under a minute on 2 cores (index builds and every --add retrain it);
HNSW was not chosen because building it over 10^6 vectors takes minutes here (REFERENCE.md: 152 s
at d = 64; ours have d ≈ 276) and a rebuild follows every --add. bench/rag.py measures latency
and stage-1 recall against numpy brute force at 10^4..10^6.
"""

from __future__ import annotations

import logging
import math
import zipfile
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from ensemble.config import FRAME_RATE, SAMPLE_RATE
from ensemble.errors import EnsembleError, IndexMismatchError
from ensemble.rag.chunks import FEATURE_VERSION, FeatureConfig, Seams
from ensemble.rag.store import (
    CENTRE_FILE,
    CONFIG_FILE,
    FILES_FILE,
    FORMAT_VERSION,
    VECTORS_FILE,
    FileRecord,
    live_version,
    read_json,
)
from ensemble.threads import one_thread

if TYPE_CHECKING:
    import faiss

FLAT_MAX = 50_000
NPROBE = 24
TRAIN_PER_LIST = 40  # k-means training points per inverted list (FAISS warns below 39)


def load_faiss() -> ModuleType:
    """Import faiss without its loader's INFO lines about missing AVX builds on every run."""
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    import faiss

    return faiss


def one_faiss_thread() -> AbstractContextManager[None]:
    """Search one query on one OpenMP thread: a single query has too little work to share, and
    on a busy 2-core machine OpenMP's waiting threads made a 10^4-chunk flat search 50x slower."""
    faiss = load_faiss()
    return one_thread(faiss.omp_get_max_threads, faiss.omp_set_num_threads)


def ivf_lists(n: int) -> int:
    """Inverted lists for ``n`` vectors: a power of two near sqrt(n)."""
    return int(2 ** round(math.log2(math.sqrt(n))))


def build_vector_index(vectors: np.ndarray, seed: int = 0) -> faiss.Index:
    """Stage-1 index over (N, d) unit float32 vectors (inner product = cosine)."""
    faiss = load_faiss()
    n, d = vectors.shape
    vectors = np.ascontiguousarray(vectors, np.float32)
    if n <= FLAT_MAX:
        index = faiss.IndexFlatIP(d)
    else:
        nlist = ivf_lists(n)
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        sample = rng.choice(n, min(n, TRAIN_PER_LIST * nlist), replace=False)
        index.train(vectors[np.sort(sample)])
        index.nprobe = NPROBE
    index.add(vectors)
    return index


@dataclass
class ContextStore:
    """Style vectors of all parts, memory-mapped; rows are global across parts."""

    parts: list[np.ndarray]  # each (P_i, S, d) float16
    offsets: np.ndarray  # (len(parts) + 1,) first global row of each part

    def take(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), S, d) float32 style vectors of global context rows."""
        rows = np.asarray(rows, np.int64)
        out = np.empty(
            (len(rows), *(self.parts[0].shape[1:] if self.parts else (0, 0))), np.float32
        )
        part = np.searchsorted(self.offsets, rows, side="right") - 1
        for p in np.unique(part):
            mask = part == p
            out[mask] = self.parts[p][rows[mask] - self.offsets[p]]
        return out


def _empty_table() -> dict[str, np.ndarray]:
    int_zero = np.zeros(0, np.int64)
    return {
        "file_index": np.zeros(0, np.int32),
        "start_s": np.zeros(0),
        "ctx_start": int_zero,
        "ctx_end": int_zero,
        **Seams.empty().arrays(),
    }


def _load_parts(version: Path, names: list[str]) -> tuple[dict[str, np.ndarray], ContextStore]:
    """All parts' chunk tables concatenated (context rows made global) and their style vectors."""
    tables, contexts, offsets = [_empty_table()], [], [0]
    for name in names:
        # Our own handle: np.load leaks its file when the archive is truncated.
        with (version / name / "chunks.npz").open("rb") as handle, np.load(handle) as data:
            table = {k: data[k] for k in data.files}
        for key in ("ctx_start", "ctx_end"):  # part-local rows -> global rows
            table[key] = table[key] + offsets[-1]
        tables.append(table)
        contexts.append(np.load(version / name / "context.npy", mmap_mode="r"))
        offsets.append(offsets[-1] + len(contexts[-1]))
    table = {k: np.concatenate([t[k] for t in tables]) for k in tables[0]}
    return table, ContextStore(contexts, np.asarray(offsets))


class RagIndex:
    """An opened index (see `open_index`). Chunk rows are 0..len-1 in build order."""

    def __init__(self, root: Path, version: Path) -> None:
        self.root = root
        self.version = version
        self.meta = read_json(version / CONFIG_FILE)
        if not isinstance(self.meta, dict) or self.meta.get("format") != FORMAT_VERSION:
            found = self.meta.get("format") if isinstance(self.meta, dict) else None
            raise IndexMismatchError(
                f"The index at '{root}' has format {found!r}; this Ensemble reads format "
                f"{FORMAT_VERSION}. Rebuild it with `python -m ensemble index build`."
            )
        try:
            self.config = FeatureConfig.from_json(self.meta["features"])
        except (KeyError, TypeError, ValueError, EnsembleError) as exc:
            raise _corrupt(root, f"{exc.__class__.__name__}: {exc}") from exc
        # An index of another feature version stores other arrays: say so before reading them.
        _check_constants(self.config, root)
        try:
            self.files = [FileRecord(**r) for r in read_json(version / FILES_FILE)]
            table, self.context = _load_parts(version, self.meta["parts"])
            centre = version / CENTRE_FILE
            # None: no chunk yet
            self.centre = np.load(centre, allow_pickle=False) if centre.is_file() else None
        except (
            KeyError, TypeError, ValueError, OSError, EOFError, zipfile.BadZipFile, EnsembleError
        ) as exc:  # fmt: skip
            raise _corrupt(root, f"{exc.__class__.__name__}: {exc}") from exc
        self.file_of = table.pop("file_index")
        self.start_s = table.pop("start_s")
        self.ctx_start = table.pop("ctx_start")
        self.ctx_end = table.pop("ctx_end")
        try:
            self.seams = Seams(**table)
        except TypeError as exc:
            raise _corrupt(root, f"chunks.npz: {exc}") from exc
        self._vectors: faiss.Index | None = None
        self._check()

    def _check(self) -> None:
        """Sizes, dimensions and finiteness of every file, so a damaged index is refused when
        opened rather than deep inside faiss or numpy. Style vectors are checked as they are read
        (see `RagIndex.styles`): scanning them all here would read the whole index."""
        n, root = len(self.start_s), self.root
        lengths = {k: len(v) for k, v in self.seams.arrays().items()}
        lengths.update(file_index=len(self.file_of), ctx_start=len(self.ctx_start))
        if any(size != n for size in lengths.values()):
            raise _corrupt(root, f"chunks.npz arrays of unequal length {sorted(lengths.items())}")
        bad_file = n and self.file_of.max() >= len(self.files)
        if sum(r.n_chunks for r in self.files) != n or bad_file:
            raise _corrupt(root, "files.json does not match the chunk table")
        rows = self.context.offsets[-1]
        if n and (min(self.ctx_start.min(), self.ctx_end.min()) < 0
                  or max(self.ctx_start.max(), self.ctx_end.max()) >= rows):  # fmt: skip
            raise _corrupt(root, "chunk rows point outside the stored style vectors")
        numeric = [self.start_s, *self.seams.arrays().values()]
        if not all(np.all(np.isfinite(a)) for a in numeric):
            raise _corrupt(root, "chunks.npz holds NaN or infinite values")
        dims = {p.shape[1:] for p in self.context.parts}
        if len(dims) > 1 or any(d[0] != len(self.config.lookbacks_s) for d in dims):
            raise _corrupt(root, f"style vectors of inconsistent shapes {sorted(dims)}")
        if n == 0:
            return
        d = next(iter(dims))[1]
        if self.centre is None or self.centre.shape != (d,) or not np.all(np.isfinite(self.centre)):
            raise _corrupt(root, f"{CENTRE_FILE} is missing, not {d} numbers, or not finite")
        vectors = self.vectors
        if vectors.d != d or vectors.ntotal != n:
            raise _corrupt(
                root,
                f"{VECTORS_FILE} holds {vectors.ntotal} vectors of dimension {vectors.d}, the "
                f"chunks need {n} of dimension {d}",
            )

    def __len__(self) -> int:
        return len(self.start_s)

    @property
    def vectors(self) -> faiss.Index:
        """The stage-1 FAISS index, read on first use."""
        if self._vectors is None:
            path = self.version / VECTORS_FILE
            try:
                self._vectors = load_faiss().read_index(str(path))
            except RuntimeError as exc:  # faiss reports missing, truncated and foreign files so
                raise _corrupt(self.root, f"{VECTORS_FILE} cannot be read") from exc
            if hasattr(self._vectors, "nprobe"):
                self._vectors.nprobe = self.meta.get("nprobe", NPROBE)
        return self._vectors

    def styles(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), S, d) style vectors of context rows, refusing damaged (non-finite) ones."""
        out = self.context.take(rows)
        if not np.all(np.isfinite(out)):
            raise _corrupt(self.root, "some stored style vectors are NaN or infinite")
        return out

    def chunk_id(self, row: int) -> str:
        """Stable id ``<file name>@<start>s``; unchanged by later --add."""
        return f"{self.files[self.file_of[row]].name}@{self.start_s[row]:g}s"

    def source(self, row: int) -> str:
        return self.files[self.file_of[row]].name

    def source_path(self, row: int) -> Path:
        path = Path(self.files[self.file_of[row]].path)
        return path if path.is_absolute() else (self.root / path).resolve()

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Stage 1: (Q, d) unit vectors → (Q, k) similarities and chunk rows (-1 = none)."""
        k = min(k, len(self))
        with one_faiss_thread():
            return self.vectors.search(np.ascontiguousarray(vectors, np.float32), k)


def _corrupt(root: Path, what: str) -> IndexMismatchError:
    return IndexMismatchError(
        f"The index at '{root}' is incomplete or corrupt ({what}); rebuild it with "
        "`python -m ensemble index build`."
    )


def _check_constants(config: FeatureConfig, root: Path) -> None:
    """Refuse an index whose features this code would compute differently."""
    diffs = [
        f"{name} {have} vs {want}"
        for name, have, want in (
            ("sample_rate", config.sample_rate, SAMPLE_RATE),
            ("frame_rate", config.frame_rate, FRAME_RATE),
            ("feature version", config.version, FEATURE_VERSION),
        )
        if have != want
    ]
    if diffs:
        raise IndexMismatchError(
            f"The index at '{root}' was built with another feature configuration "
            f"({'; '.join(diffs)}, index vs this Ensemble); rebuild it with "
            "`python -m ensemble index build`."
        )


def open_index(path: str | Path, *, expect: FeatureConfig | None = None) -> RagIndex:
    """Open the live version of the index at ``path``.

    Args:
        path: the index folder (``--out`` of `index build`).
        expect: if given, every feature-config field must match it (e.g. chunk and hop lengths).

    Raises:
        IndexMismatchError: no index there, corrupt, or built with another feature config.
    """
    root = Path(path)
    version = live_version(root) if root.is_dir() else None
    if version is None:
        raise IndexMismatchError(
            f"No RAG index at '{root}'; build one with `python -m ensemble index build SOURCE "
            f"--out {root}`."
        )
    index = RagIndex(root, version)
    if expect is not None:
        diffs = index.config.differences(expect)
        if diffs:
            raise IndexMismatchError(
                f"The index at '{root}' was built with another feature configuration "
                f"({'; '.join(diffs)}, index vs requested); query it with its own settings or "
                "rebuild it."
            )
    return index
