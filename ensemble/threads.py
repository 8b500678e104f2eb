"""Ensemble's concurrency policy: one intra-op torch thread per render, one render per core.

Decoders (batch-1 GRUs of thousands of tiny steps), the conductor and the RAG embedder are
latency-bound: a second OpenMP thread buys nothing on an idle 2-core machine, and when the other
core is busy every step waits for it (10 s of violin: 70 ms on one thread, 17.6 s on two, measured
here under load). OpenMP keeps the thread count per calling thread, so concurrent render workers
each set and restore their own without racing.

Render pools (candidates of a round, decoders of a performance) run one render per available
core, and a pool opened inside a render worker shares only that worker's cores: two candidates
performing four decoders on two cores run two threads, not four; one candidate runs its decoders
two at a time.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager

_worker = threading.local()  # .cores: the cores a render pool's thread may use for its own pools


@contextmanager
def one_thread(get: Callable[[], int], set_threads: Callable[[int], None]) -> Iterator[None]:
    """Hold a library's thread count (torch's, faiss's OpenMP) at one while the block runs."""
    before = get()
    set_threads(1)
    try:
        yield
    finally:
        set_threads(before)


def one_torch_thread() -> AbstractContextManager[None]:
    """Hold torch at one intra-op thread (in the calling thread) while the block runs."""
    import torch

    return one_thread(torch.get_num_threads, torch.set_num_threads)


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity (a container's or taskset's share), where
    the OS reports one, else every core."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def render_workers(jobs: int) -> int:
    """Threads for ``jobs`` independent renders: one per core this thread may use (all available
    cores, or its share inside a render pool), no more than the jobs, at least one."""
    return max(1, min(jobs, _cores_here()))


def render_pool(jobs: int, name: str) -> ThreadPoolExecutor:
    """A pool of ``render_workers(jobs)`` threads named ``name``; each thread's own pools share
    out only its part of the cores, so nested pools never run more threads than cores."""
    workers = render_workers(jobs)
    return ThreadPoolExecutor(workers, thread_name_prefix=name, initializer=_enter_worker,
                              initargs=(max(1, _cores_here() // workers),))


def _cores_here() -> int:
    return getattr(_worker, "cores", None) or available_cores()


def _enter_worker(cores: int) -> None:
    _worker.cores = cores


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    return getattr(ctypes.CDLL(None), "malloc_trim", None)


def release_freed_memory() -> None:
    """Hand the memory that finished pool threads freed back to the OS (glibc's malloc_trim).

    glibc gives each thread its own malloc arena and keeps what a thread frees in that arena:
    after a render pool, the next stage in the calling thread cannot use it and grows the process
    by as much again (a 2-minute performance: ~100 MB). A no-op where libc has no malloc_trim."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
