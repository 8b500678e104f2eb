"""The Ray engine indexes like the local one (Ray started locally, two worker processes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ensemble.audio import write_audio
from ensemble.config import SAMPLE_RATE
from ensemble.instrument import Instrument, InstrumentConfig
from ensemble.rag import build_index
from tests.conftest import tone


@pytest.mark.slow  # ~45 s: Ray start-up plus torch, librosa and numba start-up in each worker
def test_ray_engine_matches_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for i, freq in enumerate((220.0, 330.0)):
        steps = [tone(freq * 2 ** (k / 12), 0.5) for k in (0, 4, 7, 12, 7, 4) * 2]
        write_audio(tmp_path / "src" / f"piece{i}.wav", np.concatenate(steps)[: 6 * SAMPLE_RATE])
    torch.manual_seed(0)
    embedder = Instrument(InstrumentConfig(name="violin", hidden_size=16, gru_layers=1))
    local = build_index(tmp_path / "src", tmp_path / "local", embedder=embedder, progress=False)
    remote = build_index(
        tmp_path / "src",
        tmp_path / "ray",
        embedder=embedder,
        engine="ray",
        workers=2,
        progress=False,
    )
    assert len(remote.index) == len(local.index) == 2 * 2  # chunks at 1 s and 2 s of each file

    def by_id(report) -> dict[str, int]:  # Ray finishes files in any order
        return {report.index.chunk_id(i): i for i in range(len(report.index))}

    local_rows, ray_rows = by_id(local), by_id(remote)
    assert set(local_rows) == set(ray_rows)
    for chunk_id, row in local_rows.items():
        other = ray_rows[chunk_id]
        assert remote.index.seams.f0_start[other] == pytest.approx(local.index.seams.f0_start[row])
        assert remote.index.start_s[other] == local.index.start_s[row]
