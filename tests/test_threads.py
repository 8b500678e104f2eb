"""The shared one-thread guard: nested and concurrent users restore torch's setting once."""

from __future__ import annotations

import threading

import torch

from ensemble.threads import one_torch_thread


def test_nested_and_concurrent_users_restore_the_setting() -> None:
    torch.set_num_threads(2)
    inside: list[int] = []
    release = threading.Event()
    entered = threading.Barrier(4)

    def worker() -> None:
        with one_torch_thread():
            inside.append(torch.get_num_threads())
            entered.wait(5)
            release.wait(5)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    entered.wait(5)
    with one_torch_thread(), one_torch_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 1  # workers still inside: nobody restored early
    release.set()
    for t in threads:
        t.join()
    assert inside == [1, 1, 1] and torch.get_num_threads() == 2
