"""Streaming render (`Instrument.stream`): block output equals the offline render."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ensemble import np_layers
from ensemble.errors import EnsembleError
from ensemble.instrument import Instrument, _mlp, default_config
from ensemble.streaming import lookahead_frames, stream_latency


def _hifi(kind: str) -> Instrument:
    """An untrained decoder at 44.1 kHz, hop 441 (drums strike on a hop/3 grid: 4 ∤ 441, and
    normalise per frame)."""
    cfg = default_config(f"hifi-{kind}", kind, 44_100)
    torch.manual_seed(1)
    instrument = Instrument(cfg)
    if kind == "pitched":  # a learned high band, as a fine-tuned 44.1 kHz decoder has
        with torch.no_grad():
            instrument.model.high_band_db.fill_(-20.0)
    return instrument


@pytest.fixture(scope="module")
def decoders() -> dict[str, Instrument]:
    return {
        "violin": Instrument.from_pretrained("violin"),
        "drums": Instrument.from_pretrained("drums"),
        "hifi-pitched": _hifi("pitched"),
        "hifi-drums": _hifi("drums"),
    }


def _track(frames: int) -> tuple[np.ndarray, np.ndarray]:
    """A pitch walk with an unvoiced gap and a wandering loudness (voiced from frame 0: the
    stream cannot look ahead to a first pitch, see `Instrument.stream`)."""
    rng = np.random.default_rng(0)
    f0 = (220.0 * 2.0 ** (rng.normal(0, 0.3, frames).cumsum() / 12)).astype(np.float32)
    f0[frames // 3 : frames // 3 + 10] = 0.0
    loud = np.clip(-30.0 + 2.5 * rng.normal(0, 1, frames).cumsum(), -90, 0).astype(np.float32)
    return f0, loud


def _stream(inst: Instrument, f0, loud, block: int, chunk: int, **kw) -> tuple[np.ndarray, list]:
    """All blocks of a stream fed ``chunk`` frames at a time, and the frames pushed when each
    block came out (None for those of `finish`)."""
    stream = inst.stream(block, seed=3, **kw)
    blocks, pushed = [], []
    for i in range(0, len(loud), chunk):
        out = stream.push(f0[i : i + chunk], loud[i : i + chunk])
        blocks.append(out)
        pushed += [min(i + chunk, len(loud))] * len(out)
    tail = stream.finish()
    pushed += [None] * len(tail)
    return np.concatenate([*blocks, tail]), pushed


@pytest.mark.parametrize("name", ["violin", "drums", "hifi-pitched", "hifi-drums"])
@pytest.mark.parametrize(("block", "chunk"), [(128, 1), (500, 7), (1024, 3)])
def test_stream_equals_offline_render(decoders, name, block, chunk):
    inst = decoders[name]
    frames = 300 if inst.config.sample_rate == 16_000 else 120
    f0, loud = _track(frames)
    offline = inst.render(f0, loud, seed=3)
    # A clip-normalised kit needs the clip's statistics; a frame-normalised one streams live.
    ref = loud if inst.config.conv_norm == "clip" and inst.kind == "drums" else None
    blocks, _ = _stream(inst, f0, loud, block, chunk, reference_loudness=ref)
    audio = blocks.ravel()
    assert blocks.shape[1] == block and len(blocks) == -(-offline.size // block)
    assert not audio[offline.size :].any()  # the last block is zero-padded
    np.testing.assert_allclose(audio[: offline.size], offline, atol=1e-5 * np.abs(offline).max())


@pytest.mark.parametrize(("name", "block"), [("violin", 128), ("violin", 500), ("drums", 256)])
def test_blocks_come_out_with_the_stated_latency(decoders, name, block):
    """Frames pushed one at a time, frame t due at sample t·hop: the worst lag of a block's
    start behind its last needed frame is `stream.latency`."""
    inst = decoders[name]
    hop = inst.config.hop_length
    # Enough blocks that their starts meet every phase of the hop (the worst case is one).
    f0, loud = _track(max(200, -(-hop * block // hop) + 100))
    ref = loud if inst.kind == "drums" and inst.config.conv_norm == "clip" else None
    _, pushed = _stream(inst, f0, loud, block, 1, reference_loudness=ref)
    lags = [(n - 1) * hop - i * block for i, n in enumerate(pushed) if n is not None]
    assert max(lags) == stream_latency(inst.config, block)
    expected_delay = 66 if inst.kind == "drums" else 0  # Σ dilations of the shipped convs
    assert lookahead_frames(inst.config) == expected_delay
    assert inst.stream(block).latency == stream_latency(inst.config, block)


def test_live_drum_statistics_settle_towards_the_offline_render(decoders):
    """Without a reference track the drum stream normalises by the frames heard so far: it
    differs from the offline render, less once more of the clip has been heard."""
    inst = decoders["drums"]
    f0, loud = _track(600)
    offline = inst.render(None, loud, seed=3)
    live = _stream(inst, f0, loud, 256, 4)[0].ravel()[: offline.size]
    second = inst.config.sample_rate
    early = np.abs(live[:second] - offline[:second]).max()
    late = np.abs(live[-second:] - offline[-second:]).max()
    assert 0 < late < early


def test_stream_refuses_bad_use(decoders):
    violin = decoders["violin"]
    for bad in (0, 100_000, 256.0, True):
        with pytest.raises(EnsembleError, match="block_size"):
            violin.stream(bad)
    with pytest.raises(EnsembleError, match="needs f0"):
        violin.stream(256).push(None, np.zeros(3, np.float32))
    with pytest.raises(EnsembleError, match="differ"):
        violin.stream(256).push(np.ones(2, np.float32), np.zeros(3, np.float32))
    with pytest.raises(EnsembleError, match="drum"):
        violin.stream(256, reference_loudness=np.zeros(3, np.float32))
    stream = violin.stream(256)
    nothing = np.zeros(0, np.float32)
    assert stream.push(nothing, nothing).shape == (0, 256)  # no frame yet: no block
    first = stream.push(np.full(4, 220.0, np.float32), np.full(4, -20.0, np.float32))
    assert stream.push(nothing, nothing).shape == (0, 256)
    blocks = -(-4 * violin.config.hop_length // 256)  # 4 frames of audio, in whole blocks
    assert len(first) + len(stream.finish()) == blocks
    with pytest.raises(EnsembleError, match="finished"):
        stream.push(np.ones(1, np.float32), np.zeros(1, np.float32))


def test_numpy_layers_equal_torch():
    """The stream's numpy GRU (state carried across calls) and MLPs compute what torch does."""
    torch.manual_seed(0)
    gru, mlp = nn.GRU(8, 16, num_layers=2, batch_first=True), _mlp(4, 16, 2)
    x = torch.randn(1, 20, 8)
    with torch.no_grad():
        expected, mlp_expected = gru(x)[0][0].numpy(), mlp(x[0, :, :4]).numpy()
    stepped = np_layers.GRU(gru)
    out = np.concatenate([stepped(x[0, :7].numpy()), stepped(x[0, 7:8].numpy()),
                          stepped(x[0, 8:].numpy())])  # fmt: skip
    np.testing.assert_allclose(out, expected, atol=1e-5)
    np.testing.assert_allclose(np_layers.sequential(mlp)(x[0, :, :4].numpy()), mlp_expected,
                               atol=1e-5)  # fmt: skip


def test_blas_is_held_at_one_thread_and_restored():
    """OpenBLAS threads a frame's strikes × kit product; on a busy machine that cost a drum
    stream 20x, so pushes hold it at one thread and give the count back afterwards."""
    libs = np_layers._blas_libraries()
    before = [lib.num_threads for lib in libs]
    with np_layers.one_blas_thread():
        assert all(lib.num_threads == 1 for lib in libs)
    assert [lib.num_threads for lib in libs] == before
