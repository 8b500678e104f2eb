"""Build or extend an index: analyse files (in-process or as Ray tasks), write a new version.

Memory stays bounded on large corpora: analysed files are flushed to a new part every
PART_CHUNKS chunks. The stage-1 vector index is rebuilt over all parts at the end (seconds even
at 10^6 chunks), so ``--add`` keeps IVF lists trained on the whole corpus.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm import tqdm

from ensemble.errors import EnsembleError, IndexMismatchError
from ensemble.outputs import check_writable
from ensemble.rag.analyse import Analysed, analyse_file, check_embedder, embedder_sha256
from ensemble.rag.chunks import Embedder, FeatureConfig, FileChunks, style_centre
from ensemble.rag.index import (
    FLAT_MAX,
    NPROBE,
    RagIndex,
    build_vector_index,
    ivf_lists,
    load_faiss,
    open_index,
)
from ensemble.rag.sources import SourceFile, find_sources
from ensemble.rag.store import (
    CENTRE_FILE,
    CONFIG_FILE,
    CURRENT,
    FILES_FILE,
    FORMAT_VERSION,
    LOCK_FILE,
    VECTORS_FILE,
    FileRecord,
    build_lock,
    link_part,
    live_version,
    new_version_dir,
    publish,
    write_json,
    write_part,
)
from ensemble.threads import available_cores

log = logging.getLogger(__name__)

# Its 128-wide GRU gave the best recall of the shipped decoders on bench/rag.py (0.969 @1 and @10
# vs clarinet's 0.906/0.953); the 256-wide violin it replaced built at 95x instead of 118-127x.
DEFAULT_EMBEDDER = "violin"
PART_CHUNKS = 20_000  # flush analysed files to disk every ~20k chunks (~180 MB of float32 context)
Engine = Literal["local", "ray"]


@dataclass
class BuildReport:
    """What a build did: the opened index, and throughput for the log and the benchmark."""

    index: RagIndex
    files_added: int
    chunks_added: int
    skipped: list[str] = field(default_factory=list)
    audio_seconds: float = 0.0
    analyse_seconds: float = 0.0  # wall time of feature extraction (both engines)
    total_seconds: float = 0.0

    @property
    def realtime_factor(self) -> float:
        """Seconds of audio indexed per second of wall time (end to end)."""
        return self.audio_seconds / max(self.total_seconds, 1e-9)


def _load_embedder(embedder: Embedder | str) -> tuple[Embedder, str]:
    """The embedder and how the index records it: a checkpoint name, a folder, or the name of an
    in-memory model (queries then load that name or pass the model)."""
    if not isinstance(embedder, str):
        return embedder, embedder.name
    from ensemble.instrument import Instrument

    folder = Path(embedder)
    reference = str(folder.resolve()) if folder.is_dir() else embedder
    return Instrument.from_pretrained(embedder), reference


def _analyse_local(
    sources: list[SourceFile], config: FeatureConfig, embedder: Embedder, workers: int
) -> Iterator[Analysed]:
    """Files analysed by ``workers`` threads of this process, yielded in source order.

    Threads rather than processes: every expensive step (ONNX pitch, the GRU, FFTs, libsndfile)
    runs in native code without the GIL, so threads scale across cores without pickling the
    embedder or paying a worker start-up, and fork hazards (OpenMP, ONNX pools) never arise.
    Each file then runs its pitch tracker and GRU on one thread, the cheapest per CPU second.
    """
    if workers <= 1 or len(sources) <= 1:
        for source in sources:
            yield analyse_file(source, config, embedder)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="ensemble-index") as pool:
        pending: deque[Future[Analysed]] = deque()
        for source in sources:
            pending.append(pool.submit(analyse_file, source, config, embedder, 1))
            if len(pending) >= 2 * workers:  # bounded in-flight results
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _analyse_ray(
    sources: list[SourceFile], config: FeatureConfig, embedder: Embedder, workers: int
) -> Iterator[Analysed]:
    """Ray tasks over files. With RAY_ADDRESS set, joins that cluster; else starts a local one."""
    import ray

    started = not ray.is_initialized()
    if started:
        address = os.environ.get("RAY_ADDRESS")
        try:
            if address:
                ray.init(include_dashboard=False)
            else:
                package_root = str(Path(__file__).resolve().parents[2])
                ray.init(
                    num_cpus=workers,
                    include_dashboard=False,
                    log_to_driver=False,
                    # Workers must import `ensemble` even when the driver found it on sys.path.
                    runtime_env={"env_vars": {"PYTHONPATH": package_root}},
                )
        except Exception as exc:  # Ray raises many types (ConnectionError, RuntimeError, ...)
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise EnsembleError(
                f"Could not start {where} ({exc.__class__.__name__}: {exc}); check RAY_ADDRESS "
                "or use --engine local."
            ) from exc
    try:
        task = ray.remote(num_cpus=1)(analyse_file)
        model = ray.put(embedder)
        queue = list(reversed(sources))
        pending: list = []
        while queue or pending:
            while queue and len(pending) < 2 * workers:  # bounded in-flight results
                pending.append(task.remote(queue.pop(), config, model, 1))
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    finally:
        if started:
            ray.shutdown()


def _unique_name(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}~{n}"
    taken.add(candidate)
    return candidate


def _record(root: Path, item: Analysed, chunks: FileChunks) -> FileRecord:
    path = item.source.path.resolve()
    try:
        stored = os.path.relpath(path, root.resolve())
    except ValueError:  # another drive (Windows): keep it absolute
        stored = str(path)
    return FileRecord(
        name=chunks.name,
        path=stored,
        split=item.source.split,
        duration_s=chunks.duration_s,
        sha256=item.sha256,
        n_chunks=len(chunks.start_s),
    )


def _target_config(
    existing: RagIndex | None,
    embedder: Embedder,
    reference: str,
    chunk_seconds: float | None,
    hop_seconds: float | None,
) -> FeatureConfig:
    if existing is None:
        defaults = FeatureConfig()
        return FeatureConfig(
            chunk_seconds=chunk_seconds or defaults.chunk_seconds,
            hop_seconds=hop_seconds or defaults.hop_seconds,
            embedder=reference,
            embedder_sha256=embedder_sha256(embedder),
        )
    config = existing.config
    for flag, given, have in (
        ("--chunk-seconds", chunk_seconds, config.chunk_seconds),
        ("--hop-seconds", hop_seconds, config.hop_seconds),
    ):
        if given is not None and given != have:
            raise IndexMismatchError(
                f"{flag} {given:g} differs from the index's {have:g}; --add must use the "
                "index's own settings (leave the option out) or build a new index."
            )
    check_embedder(config, embedder)
    return config


class _VersionWriter:
    """Writes a new, not yet live, version: reused parts, new parts, files, vectors, config."""

    def __init__(
        self,
        root: Path,
        existing: RagIndex | None,
        config: FeatureConfig,
        on_stage: Callable[[str], None] | None,
    ) -> None:
        self.root, self.config, self.on_stage = root, config, on_stage
        self.partial = new_version_dir(root)
        self.parts: list[str] = []
        self.records: list[FileRecord] = list(existing.files) if existing else []
        self.centre = existing.centre if existing else None
        if existing is not None:
            if existing.centre is not None:
                np.save(self.partial / CENTRE_FILE, existing.centre)
            for name in existing.meta["parts"]:
                link_part(existing.version / name, self.partial / name)
                self.parts.append(name)
        self.pending: list[FileChunks] = []
        self.pending_records: list[FileRecord] = []
        self.pending_chunks = 0

    def _stage(self, name: str) -> None:
        if self.on_stage:
            self.on_stage(name)

    def add(self, chunks: FileChunks, record: FileRecord) -> None:
        self.pending.append(chunks)
        self.pending_records.append(record)
        self.pending_chunks += len(chunks.start_s)
        if self.pending_chunks >= PART_CHUNKS:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        raw = np.concatenate([c.context for c in self.pending])
        if self.centre is None and len(raw):  # the first chunks fix the centre, also for --add
            self.centre = style_centre(raw)
            np.save(self.partial / CENTRE_FILE, self.centre)
        centre = self.centre if self.centre is not None else np.zeros(raw.shape[-1], np.float32)
        name = f"part-{len(self.parts):03d}"
        write_part(self.partial / name, self.pending, len(self.records), centre, self.config)
        self.parts.append(name)
        self.records.extend(self.pending_records)
        self.pending, self.pending_records, self.pending_chunks = [], [], 0
        self._stage("part")

    def publish(self) -> int:
        """Finish the version and make it live; returns its number of chunks."""
        self.flush()
        write_json(self.partial / FILES_FILE, [r.__dict__ for r in self.records])
        self._stage("files")
        vectors = [np.load(self.partial / name / "vectors.npy") for name in self.parts]
        n = sum(len(v) for v in vectors)
        if n:  # an empty index has no vector file; opening it works, querying it says it is empty
            index = build_vector_index(np.concatenate(vectors))
            load_faiss().write_index(index, str(self.partial / VECTORS_FILE))
        self._stage("vectors")
        meta = {
            "format": FORMAT_VERSION,
            "features": self.config.to_json(),
            "parts": self.parts,
            "n_files": len(self.records),
            "n_chunks": n,
            "vector_index": "flat" if n <= FLAT_MAX else f"ivf{ivf_lists(n)}",
            "nprobe": NPROBE,
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        write_json(self.partial / CONFIG_FILE, meta)
        self._stage("config")
        publish(self.root, self.partial)
        return n


def _check_out_folder(root: Path) -> None:
    check_writable(root, "--out")
    # Only our own files and v-* folders (maybe left by a crashed build) may already be there.
    ours = (CURRENT, f"{CURRENT}.tmp", LOCK_FILE)
    if root.is_dir() and any(p.name not in ours and p.name[:2] != "v-" for p in root.iterdir()):
        raise EnsembleError(
            f"'{root}' exists and is not an Ensemble index; choose a new or empty folder."
        )


def build_index(
    source: str | Path,
    out: str | Path,
    *,
    chunk_seconds: float | None = None,
    hop_seconds: float | None = None,
    embedder: Embedder | str | None = None,
    engine: Engine = "local",
    workers: int | None = None,
    add: bool = False,
    progress: bool = True,
    on_stage: Callable[[str], None] | None = None,
) -> BuildReport:
    """Index the audio under ``source`` into ``out`` (a new version, published atomically).

    Args:
        source: Slakh-layout corpus, folder of audio files, or one audio file.
        out: index folder; an existing index there is replaced (or extended with ``add``).
        chunk_seconds, hop_seconds: chunking (defaults 4 s / 1 s; with ``add``, the index's own).
        embedder: the decoder whose GRU states give the style embedding, or its checkpoint name
            or folder (default: DEFAULT_EMBEDDER; with ``add``, the one the index was built with).
        engine: "local" (threads of this process) or "ray" (one task per file).
        workers: files analysed in parallel: threads (local) or Ray CPUs (default: all cores).
        add: append files not yet in the index instead of rebuilding from scratch.
        progress: show a progress bar.
        on_stage: called with "part", "files", "vectors" and "config" after each is written
            (progress reporting; a crash there must leave the old version live).

    Raises:
        EnsembleError: bad source, mismatched settings for ``add``, or not an index folder.
    """
    begin = time.perf_counter()
    root = Path(out)
    _check_out_folder(root)
    created = not root.exists()
    try:
        with build_lock(root):
            return _build(
                source, root, begin, chunk_seconds, hop_seconds, embedder, engine, workers, add,
                progress, on_stage,
            )  # fmt: skip
    except BaseException:
        if created and not (root / CURRENT).exists():  # failed before publishing: no folder
            shutil.rmtree(root, ignore_errors=True)
        raise


def _build(
    source: str | Path,
    root: Path,
    begin: float,
    chunk_seconds: float | None,
    hop_seconds: float | None,
    embedder: Embedder | str | None,
    engine: Engine,
    workers: int | None,
    add: bool,
    progress: bool,
    on_stage: Callable[[str], None] | None,
) -> BuildReport:
    existing = open_index(root) if add else None
    if not add and live_version(root) is not None:
        log.info("Replacing the index at %s (the old one stays live until the new is ready).", root)
    if embedder is None:
        embedder = existing.config.embedder if existing else DEFAULT_EMBEDDER
    model, reference = _load_embedder(embedder)
    config = _target_config(existing, model, reference, chunk_seconds, hop_seconds)
    known = existing.files if existing else []
    fresh, skipped = _new_sources(find_sources(source), root, known)
    writer = _VersionWriter(root, existing, config, on_stage)
    parallel = workers or available_cores()
    analysed: Iterable[Analysed] = (
        _analyse_ray(fresh, config, model, parallel)
        if engine == "ray"
        else _analyse_local(fresh, config, model, parallel)
    )
    added = _write_analysed(analysed, len(fresh), root, known, writer, skipped, progress)
    for message in skipped:
        log.warning("skipped %s", message)
    if writer.publish() == 0:
        log.warning("The index at %s holds no chunks: every file was skipped or too short.", root)
    return BuildReport(
        index=open_index(root),
        files_added=added.files,
        chunks_added=added.chunks,
        skipped=skipped,
        audio_seconds=added.audio_seconds,
        analyse_seconds=added.analyse_seconds,
        total_seconds=time.perf_counter() - begin,
    )


def _new_sources(sources: list[SourceFile], root: Path, known: list[FileRecord]
                 ) -> tuple[list[SourceFile], list[str]]:
    """The sources not yet in the index (by path), and a skip message for each of the others."""
    known_paths = {(root / r.path).resolve() for r in known}
    fresh = [s for s in sources if s.path.resolve() not in known_paths]
    return fresh, [f"{s.name}: already in the index" for s in sources if s not in fresh]


@dataclass
class _Added:
    files: int = 0
    chunks: int = 0
    audio_seconds: float = 0.0
    analyse_seconds: float = 0.0  # wall time of the analysis, writing included


def _write_analysed(
    analysed: Iterable[Analysed],
    n_files: int,
    root: Path,
    known: list[FileRecord],
    writer: _VersionWriter,
    skipped: list[str],
    progress: bool,
) -> _Added:
    """Hand each analysed file to the writer as it arrives; files that failed, and audio
    already indexed (by content), are appended to ``skipped``."""
    known_sha = {r.sha256 for r in known}
    taken = {r.name for r in known}
    added = _Added()
    started = time.perf_counter()
    bar = tqdm(total=n_files, desc="indexing", unit="file", disable=None if progress else True)
    for item in analysed:
        bar.update(1)
        if item.chunks is None or item.sha256 in known_sha:
            skipped.append(f"{item.source.name}: {item.skipped or 'same audio already indexed'}")
            continue
        known_sha.add(item.sha256)
        item.chunks.name = _unique_name(item.chunks.name, taken)
        writer.add(item.chunks, _record(root, item, item.chunks))
        added.audio_seconds += item.chunks.duration_s
        added.chunks += len(item.chunks.start_s)
        added.files += 1
        bar.set_postfix(realtime=f"{added.audio_seconds / (time.perf_counter() - started):.0f}x")
    bar.close()
    added.analyse_seconds = time.perf_counter() - started
    return added
