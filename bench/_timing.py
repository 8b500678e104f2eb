"""Wall-clock timing shared by the benchmarks (a helper module, not a benchmark itself)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any


def timed(
    fn: Callable[[], Any], repeats: int, reduce: Callable[[Sequence[float]], float] = min
) -> tuple[float, Any]:
    """(``reduce`` of ``repeats`` wall times of ``fn()``, its last result), after one warm-up
    call that pays one-off costs (ONNX sessions, numba compilation, torch kernels, FFT plans)."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return float(reduce(times)), result
