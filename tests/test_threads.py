"""The concurrency policy: the one-thread guard restores torch's setting (also when nested or
left by an error); render pools run one render per core, also when nested."""

from __future__ import annotations

import os
import threading
import time

import pytest
import torch

from ensemble import threads
from ensemble.threads import available_cores, one_torch_thread, render_pool, render_workers


def test_guard_restores_after_nesting_and_errors() -> None:
    torch.set_num_threads(2)
    with one_torch_thread():
        assert torch.get_num_threads() == 1
        with one_torch_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError), one_torch_thread():
        raise RuntimeError("render failed")
    assert torch.get_num_threads() == 2


def _nested(pool_jobs: int, inner_jobs: int) -> tuple[int, set[int], int]:
    """(threads of the outer pool, threads each task's own pool got, most renders running at once)
    when every task of a render pool opens a pool of its own, as a round's candidates each
    perform several decoders."""
    lock = threading.Lock()
    running, peak, inner = [0], [0], set()

    def render(_: int) -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1

    def candidate(_: int) -> None:
        with render_pool(inner_jobs, "decoder") as pool:
            inner.add(pool._max_workers)
            list(pool.map(render, range(inner_jobs)))

    with render_pool(pool_jobs, "candidate") as pool:
        list(pool.map(candidate, range(pool_jobs)))
    return pool._max_workers, inner, peak[0]


def test_available_cores_follow_the_affinity_else_the_core_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if hasattr(os, "sched_getaffinity"):
        assert available_cores() == len(os.sched_getaffinity(0))
        monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert available_cores() == 6
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert available_cores() == 1


def test_render_workers_one_per_core_at_most_one_per_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    assert [render_workers(jobs) for jobs in (0, 1, 2, 5)] == [1, 1, 2, 2]
    monkeypatch.setattr(threads, "available_cores", lambda: 16)
    assert render_workers(5) == 5


def test_nested_render_pools_never_run_more_renders_than_cores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    outer, inner, peak = _nested(pool_jobs=2, inner_jobs=2)
    assert (outer, inner) == (2, {1}) and peak <= 2  # 2 x 2 ran 4 threads on 2 cores before
    assert _nested(pool_jobs=1, inner_jobs=4)[:2] == (1, {2})  # a lone candidate: both cores
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    outer, inner, peak = _nested(pool_jobs=2, inner_jobs=4)
    assert (outer, inner) == (2, {4}) and peak <= 8
    assert render_workers(3) == 3  # the calling thread keeps every core after its pools
