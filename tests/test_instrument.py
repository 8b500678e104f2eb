"""Decoders learn, checkpoints round-trip (folder, name, offline Hub cache) and fail clearly."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from ensemble import dsp
from ensemble import instrument as inst_mod
from ensemble.config import HOP_LENGTH
from ensemble.errors import CheckpointError, EnsembleError
from ensemble.instrument import (
    Instrument,
    InstrumentConfig,
    build_decoder,
    fill_unvoiced_f0,
    list_pretrained,
)
from ensemble.training.instrument import (
    ExcerptSampler,
    Stem,
    TrainOptions,
    dataset_stats,
    fit,
    training_f0,
)

# One thread: on a shared 2-core machine two busy-waiting OpenMP threads are up to 20x slower.
torch.set_num_threads(1)


def tiny(kind: str = "pitched", name: str = "tiny") -> InstrumentConfig:
    return InstrumentConfig(
        name=name,
        kind=kind,
        hidden_size=32,
        n_harmonics=20,
        n_noise_bands=17,
        conv_dilations=(1, 2, 4),
        n_tonal=3,
        reverb_seconds=0.05,
    )


def tone(frames: int, f0_hz: float = 220.0, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Bowed-string-like tone (vibrato, 1/k harmonics, swell) as (f0, loudness, audio)."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / 100.0
    f0 = f0_hz * 2 ** (0.3 / 12 * np.sin(2 * math.pi * 5.0 * t))
    env = np.linspace(0.2, 1.0, frames) ** 2
    k = np.arange(1, 21)
    amps = torch.tensor((0.3 / k)[None, :] * env[:, None], dtype=torch.float32).unsqueeze(0)
    f0_t = torch.tensor(f0, dtype=torch.float32).unsqueeze(0)
    audio = dsp.harmonic_synth(f0_t, amps)[0].numpy()
    audio = audio + 0.003 * rng.standard_normal(len(audio)).astype(np.float32)
    loudness = (20 * np.log10(0.2 * env + 1e-5)).astype(np.float32)
    return f0.astype(np.float32), loudness, audio.astype(np.float32)


def stem(frames: int, seed: int = 0, silent_head: int = 0) -> Stem:
    f0, loud, audio = tone(frames, 200.0 + 20 * seed, seed)
    loud[:silent_head] = -100.0
    audio[: silent_head * HOP_LENGTH] = 0.0
    pcm = np.round(audio * 32767).astype(np.int16)
    return Stem(pcm, f0, loud, np.ones(frames, bool), False, f"s{seed}")


@pytest.mark.parametrize("kind", ["pitched", "drums"])
def test_decoders_render_frame_aligned_audio_and_embeddings(kind: str) -> None:
    instrument = Instrument(tiny(kind))
    f0 = np.full(50, 330.0, np.float32)
    loud = np.linspace(-80, -20, 50).astype(np.float32)
    audio = instrument.render(f0 if kind == "pitched" else None, loud)
    assert audio.shape == (50 * HOP_LENGTH,) and audio.dtype == np.float32
    assert np.isfinite(audio).all()
    assert np.array_equal(audio, instrument.render(f0, loud))  # deterministic noise per seed
    assert not np.array_equal(audio, instrument.render(f0, loud, seed=1))
    assert instrument.embed(f0, loud).shape == (50, 32)


def test_long_inputs_run_as_warmed_up_segments_without_seams() -> None:
    model = build_decoder(tiny())
    rng = np.random.default_rng(0)
    f0 = torch.tensor(200 * 2 ** (rng.normal(0, 0.2, 900).cumsum() / 12), dtype=torch.float32)
    loud = torch.tensor(rng.uniform(-60, -10, 900), dtype=torch.float32)
    with torch.no_grad():
        whole = model.embed(f0[None], loud[None])
        model.segment_frames = inst_mod.SEGMENT_FRAMES
        segmented = model.embed(f0[None], loud[None])
    assert segmented.shape == whole.shape == (1, 900, 32)
    # After the first second the GRU has forgotten how it started: segments join seamlessly.
    assert torch.allclose(segmented[:, 100:], whole[:, 100:], atol=1e-4)


def test_pitched_render_fills_unvoiced_frames_and_needs_f0() -> None:
    assert np.allclose(
        fill_unvoiced_f0(np.array([0, 220, 0, np.nan, 440, 0.0])), [220] * 4 + [440] * 2
    )
    assert np.allclose(fill_unvoiced_f0(np.zeros(3)), 220.0)
    instrument = Instrument(tiny())
    assert np.isfinite(instrument.render(np.zeros(20), np.full(20, -30.0))).all()
    with pytest.raises(ValueError, match="needs an f0"):
        instrument.render(None, np.full(20, -30.0))


def test_tiny_decoder_overfits_a_one_second_tone() -> None:
    torch.manual_seed(0)
    f0, loud, audio = tone(100)
    model = build_decoder(tiny())
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    f0_t, loud_t = torch.from_numpy(f0)[None], torch.from_numpy(loud)[None]
    target = torch.from_numpy(audio)[None]
    losses = []
    for _ in range(40):
        loss = dsp.multiscale_spectral_loss(model(f0_t, loud_t), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]  # measured: 0.25 after 40 steps


def test_drum_decoder_learns_a_noise_burst() -> None:
    torch.manual_seed(0)
    env = np.exp(-np.arange(100) / 8.0) * (np.arange(100) % 50 < 50)
    env = np.maximum(env, np.roll(env, 50))
    loud = (20 * np.log10(0.3 * env + 1e-4)).astype(np.float32)
    gen = torch.Generator().manual_seed(3)
    target = dsp.filtered_noise(
        torch.tensor(0.3 * env, dtype=torch.float32).view(1, 100, 1).expand(1, 100, 17),
        generator=gen,
    )
    model = build_decoder(tiny("drums"))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = dsp.multiscale_spectral_loss(model(torch.from_numpy(loud)[None]), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


def test_drum_kit_config_is_checked(tmp_path: Path) -> None:
    bad = tiny("drums")
    bad.strikes_per_frame = 3  # does not divide the 160-sample hop
    with pytest.raises(CheckpointError, match="strikes_per_frame"):
        build_decoder(bad)
    # A drum checkpoint from before the kit existed: its weights lack the one-shots.
    Instrument(tiny("drums", name="old-drums")).save(tmp_path / "old-drums")
    weights = load_file(tmp_path / "old-drums" / "model.safetensors")
    del weights["shots"]
    save_file(weights, tmp_path / "old-drums" / "model.safetensors")
    with pytest.raises(CheckpointError, match="do not match"):
        Instrument.from_pretrained(tmp_path / "old-drums")


def test_checkpoint_round_trip_by_path_and_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tiny(name="violin")
    config.stats = {"pitch_midi_mean": 67.0, "loudness_quantiles": [-40.0, -20.0]}
    original = Instrument(config)
    original.save(tmp_path / "violin")
    f0, loud = np.full(30, 300.0, np.float32), np.full(30, -25.0, np.float32)

    loaded = Instrument.from_pretrained(tmp_path / "violin")
    assert loaded.name == "violin" and loaded.kind == "pitched"
    assert loaded.stats["pitch_midi_mean"] == 67.0
    assert np.array_equal(loaded.render(f0, loud), original.render(f0, loud))

    monkeypatch.setattr(inst_mod, "CHECKPOINT_ROOT", tmp_path)
    assert list_pretrained() == ["violin"]
    assert Instrument.from_pretrained("violin").config == loaded.config
    with pytest.raises(CheckpointError, match="available: violin"):
        Instrument.from_pretrained("tuba")


def test_corrupt_or_mismatched_checkpoints_raise_checkpoint_error(tmp_path: Path) -> None:
    good = Instrument(tiny()).save(tmp_path / "good")

    def variant(name: str) -> Path:
        path = tmp_path / name
        path.mkdir()
        for f in good.iterdir():
            (path / f.name).write_bytes(f.read_bytes())
        return path

    truncated = variant("truncated")
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="missing or corrupt"):
        Instrument.from_pretrained(truncated)

    garbage = variant("garbage")
    (garbage / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="Cannot read"):
        Instrument.from_pretrained(garbage)

    mismatched = variant("mismatched")
    cfg = json.loads((mismatched / "config.json").read_text())
    cfg["hidden_size"] = 48
    (mismatched / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not match"):
        Instrument.from_pretrained(mismatched)

    future = variant("future")
    cfg = json.loads((future / "config.json").read_text())
    cfg["format_version"] = 99
    (future / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="format version"):
        Instrument.from_pretrained(future)

    nan = tiny()
    model = build_decoder(nan)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    with pytest.raises(CheckpointError, match="NaN"):
        Instrument.from_pretrained(inst_mod.save_checkpoint(tmp_path / "nan", nan, model))


def test_hub_checkpoint_loads_offline_from_local_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--ensemble--instruments"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    original = Instrument(tiny(name="cello"))
    original.save(repo / "snapshots" / commit / "cello")

    loaded = Instrument.from_pretrained(
        "cello", repo_id="ensemble/instruments", cache_dir=tmp_path / "hub"
    )
    f0, loud = np.full(10, 130.0, np.float32), np.full(10, -30.0, np.float32)
    assert np.array_equal(loaded.render(f0, loud), original.render(f0, loud))
    with pytest.raises(CheckpointError, match="Hugging Face repo"):
        Instrument.from_pretrained(
            "flute", repo_id="ensemble/instruments", cache_dir=tmp_path / "hub"
        )


def test_training_f0_trusts_the_tracker_except_where_midi_disagrees() -> None:
    tracked = np.array([220.0, 440.0, 220.0, 225.0, 0.0, 0.0])
    confidence = np.array([0.9, 0.9, 0.1, 0.9, 0.1, 0.1])
    midi = np.array([220.0, 220.0, 220.0, 0.0, 0.0, 0.0])  # frame 1: tracker octave error
    f0, voiced = training_f0(tracked, confidence, midi)
    assert np.allclose(f0, [220, 220, 220, 225, 225, 225], atol=1e-3)
    assert voiced.tolist() == [True, True, True, True, False, False]


def test_sampler_skips_silence_and_stats_describe_the_audio() -> None:
    stems = [stem(300, 0, silent_head=200), stem(150, 1)]
    sampler = ExcerptSampler(stems, 100, "cpu")
    f0, loud, audio = sampler.batch(64, torch.Generator().manual_seed(0))
    assert f0.shape == loud.shape == (64, 100) and audio.shape == (64, 100 * HOP_LENGTH)
    assert ((loud > -60).float().mean(dim=1) >= 0.3).all()
    assert audio.abs().max() <= 1.0
    with pytest.raises(EnsembleError, match="No sounding excerpt"):
        ExcerptSampler(stems, 400, "cpu")
    stats = dataset_stats(stems, "pitched")
    assert len(stats["loudness_quantiles"]) == len(stats["quantile_levels"]) == 21
    assert 55 < stats["pitch_midi_mean"] < 60  # 200-240 Hz tones
    assert stats["pitch_midi_quantiles"] == sorted(stats["pitch_midi_quantiles"])


def test_fit_writes_a_loadable_checkpoint_and_resumes(tmp_path: Path) -> None:
    train, val = [stem(150, 0), stem(150, 1)], [stem(120, 2)]
    options = TrainOptions(
        steps=4, batch_size=2, seconds=0.5, val_every=2, log_every=1, val_excerpts=2, progress=False
    )
    out = fit(train, val, tiny(name="violin"), tmp_path / "violin", options)
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]
    assert any(r.get("val_loss") is not None for r in records)
    loaded = Instrument.from_pretrained(out)
    assert loaded.config.training["steps"] == 4 and "loudness_quantiles" in loaded.stats

    with pytest.raises(EnsembleError, match="--resume"):
        fit(train, val, tiny(name="violin"), out, options)
    options.resume, options.steps = True, 6
    fit(train, val, tiny(name="violin"), out, options)
    assert Instrument.from_pretrained(out).config.training["steps"] == 6
    state = torch.load(out / "train_state.pt", weights_only=True)
    assert state["step"] == 6


def test_fit_can_fine_tune_from_a_checkpoint(tmp_path: Path) -> None:
    train, val = [stem(150, 0)], [stem(120, 2)]
    options = TrainOptions(
        steps=1, batch_size=2, seconds=0.5, val_every=1, val_excerpts=2, progress=False, lr=0.0
    )  # lr 0: the weights must stay the start's
    start = Instrument(tiny(name="violin"))
    start.save(tmp_path / "start")
    options.init = str(tmp_path / "start")
    out = fit(train, val, tiny(name="violin"), tmp_path / "tuned", options)
    tuned = Instrument.from_pretrained(out).model.state_dict()
    for key, value in start.model.state_dict().items():
        torch.testing.assert_close(tuned[key], value)
    options.init, options.steps = str(tmp_path / "start"), 1
    wider = tiny(name="violin")
    wider.hidden_size = 48
    with pytest.raises(EnsembleError, match="another architecture"):
        fit(train, val, wider, tmp_path / "other", options)


def test_cli_registers_the_instrument_trainer_with_device_defaults() -> None:
    from ensemble.cli import build_parser
    from ensemble.commands.train import instrument_options as options_from_args

    base = ["train", "instrument", "--data", "d", "--instrument", "violin"]
    gpu = options_from_args(build_parser().parse_args([*base, "--device", "cuda"]))
    assert (gpu.device, gpu.batch_size, gpu.seconds, gpu.amp) == ("cuda", 32, 2.0, False)
    cpu = options_from_args(build_parser().parse_args([*base, "--batch-size", "4", "--amp"]))
    assert (cpu.device, cpu.batch_size, cpu.seconds, cpu.amp) == ("cpu", 4, 1.0, True)
