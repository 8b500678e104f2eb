"""One intra-op torch thread for latency-bound inference.

Decoders (batch-1 GRUs of thousands of tiny steps), the conductor and the RAG embedder are
latency-bound: a second OpenMP thread buys nothing on an idle 2-core machine, and when the other
core is busy every step waits for it (10 s of violin: 70 ms on one thread, 17.6 s on two, measured
here under load). OpenMP keeps the thread count per calling thread, so concurrent render workers
each set and restore their own without racing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Hold torch at one intra-op thread (in the calling thread) while the block runs."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
