"""One intra-op torch thread for latency-bound inference, safe when several Python threads use it.

Decoders (batch-1 GRUs of thousands of tiny steps), the conductor and the RAG embedder are
latency-bound: a second OpenMP thread buys nothing on an idle 2-core machine, and when the other
core is busy every step waits for it (10 s of violin: 70 ms on one thread, 17.6 s on two, measured
here under load). torch's thread count is process-wide, so the setting is reference-counted: the
first user sets it, the last one restores it, and concurrent renders never race on it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_users = 0
_saved = 1


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Hold torch at one intra-op thread while the block runs."""
    import torch

    global _users, _saved
    with _lock:
        if _users == 0:
            _saved = torch.get_num_threads()
            torch.set_num_threads(1)
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                torch.set_num_threads(_saved)
