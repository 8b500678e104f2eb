"""Training packs: lossless audio, budgets, and caches the trainers read after unpacking."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from ensemble.data.cache import build_cache, iter_cached_tracks
from ensemble.data.pack import pack, unpack
from tests.test_data_loaders import write_slakh_track


def _corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    for i in (1, 2, 3):
        write_slakh_track(root / f"Track0000{i}", ours=True)
    splits = {"train": ["Track00001", "Track00002"], "validation": ["Track00003"], "test": []}
    (root / "splits.json").write_text(json.dumps(splits))
    build_cache(root, workers=1, progress=False)
    return root


def test_pack_round_trip_respects_budget_and_is_lossless(tmp_path: Path) -> None:
    root = _corpus(tmp_path)
    report = pack(root, tmp_path / "pack", ["violin"], seconds={"train": 0.5, "validation": 5})
    assert report.seconds["train"]["violin"] == 1.0  # whole stems: one 1 s stem meets 0.5 s
    out = unpack(tmp_path / "pack", tmp_path / "unpacked")
    original = {t.track: t for t in iter_cached_tracks(root)}
    decoders = list(iter_cached_tracks(out / "decoders"))
    assert [t.track for t in decoders] == ["Track00001", "Track00003"]
    for track in decoders:
        assert set(track.stems) == {"S00"}  # only the requested instrument travels
        np.testing.assert_array_equal(
            track.stems["S00"]["audio"], original[track.track].stems["S00"]["audio"]
        )
    conductor = list(iter_cached_tracks(out / "conductor", "train"))
    assert len(conductor) == 2
    leader = conductor[0].stems["S00"]
    assert "audio" not in leader and leader["chroma"].shape[0] == 12
    assert set(conductor[0].stems["S01"]) >= {"f0_truth", "loudness_db"}
    assert (out / "conductor" / "splits.json").is_file()


def test_pack_cli_errors_are_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ensemble", "corpus", "pack", str(tmp_path), "--out",
         str(tmp_path / "p"), "--instruments", "violin"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "No feature cache" in done.stderr
    assert "Traceback" not in done.stderr


def test_caches_written_before_the_f0_rename_still_read(tmp_path: Path) -> None:
    from ensemble.data.cache import META_KEY, load_track, stem_field

    meta = {"track": "T1", "split": "train", "stems": {"S00": {"instrument": "violin"}}}
    (tmp_path / "cache").mkdir()
    f0 = np.array([0.0, 440.0], np.float32)
    np.savez(tmp_path / "cache" / "T1.npz", **{"S00/f0_midi": f0, META_KEY: json.dumps(meta)})
    np.testing.assert_array_equal(load_track(tmp_path, "T1").stems["S00"]["f0_truth"], f0)
    with np.load(tmp_path / "cache" / "T1.npz") as data:
        np.testing.assert_array_equal(stem_field(data, "S00", "f0_truth"), f0)
