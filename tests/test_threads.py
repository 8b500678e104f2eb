"""The shared one-thread guard restores torch's setting, also when nested or left by an error."""

from __future__ import annotations

import pytest
import torch

from ensemble.threads import one_torch_thread


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
