"""Audio above 16 kHz: corpus rendering at 44.1 kHz, training data read at the decoder's rate,
weights carried across rates, and the synth pieces that the higher rate stresses."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ensemble import dsp
from ensemble.cli import main
from ensemble.corpus import render_corpus
from ensemble.data.cache import build_cache
from ensemble.errors import CheckpointError, DataError
from ensemble.instrument import Instrument, build_decoder, default_config
from ensemble.training.instrument import load_stems
from ensemble.training.rate_transfer import transfer_state

HIFI = 44_100


@pytest.fixture(scope="module")
def hifi_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hifi") / "corpus"
    render_corpus(out, max_pieces=1, seed=0, workers=1, max_seconds=4, sample_rate=HIFI,
                  progress=False)  # fmt: skip
    build_cache(out, workers=1, progress=False)
    return out


def test_corpus_renders_at_the_asked_rate_on_the_shared_frame_grid(hifi_corpus: Path) -> None:
    track = hifi_corpus / "Track00001"
    for stem in sorted((track / "stems").iterdir()):
        info = sf.info(stem)
        f0 = np.load(track / "f0" / f"{stem.stem}.npy")
        assert info.samplerate == HIFI and info.frames == len(f0) * 441
    audio, sr = sf.read(track / "stems" / "S00.flac")
    spectrum = np.abs(np.fft.rfft(audio))
    freqs = np.fft.rfftfreq(len(audio), 1 / sr)
    assert spectrum[freqs > 8000].sum() > 1e-3 * spectrum.sum()  # a band 16 kHz cannot hold


def test_training_stems_come_at_the_decoder_rate(hifi_corpus: Path) -> None:
    low = load_stems(hifi_corpus, "violin", "train") or load_stems(hifi_corpus, "flute", "train")
    assert low, "the one-piece corpus has a violin or flute stem"
    instrument = "violin" if load_stems(hifi_corpus, "violin", "train") else "flute"
    high = load_stems(hifi_corpus, instrument, "train", HIFI)
    for a, b in zip(low, high, strict=True):
        assert len(a.audio) == len(a.loudness_db) * 160 and len(b.audio) == len(b.loudness_db) * 441
        np.testing.assert_array_equal(a.f0_hz, b.f0_hz)
        # The same performance: 16 kHz cache audio vs the 44.1 kHz stem, level within 0.5 dB.
        rms = [np.sqrt(np.mean(x.audio.astype(np.float64) ** 2)) for x in (a, b)]
        assert abs(20 * np.log10(rms[1] / rms[0])) < 0.5
    with pytest.raises(DataError, match="--sample-rate 48000"):
        load_stems(hifi_corpus, instrument, "train", 48_000)


def test_cli_refuses_a_rate_off_the_frame_grid(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code = main(["corpus", "render", "--out", str(tmp_path / "c"), "--sample-rate", "22050"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "16000, 44100, 48000" in err


@pytest.mark.parametrize("kind", ["pitched", "drums"])
def test_weights_carry_across_rates(kind: str) -> None:
    torch.manual_seed(0)
    new_config = default_config("x", kind, HIFI)
    old_config = default_config("x", kind)
    old_config.conv_norm = new_config.conv_norm  # the norm's weights carry; compare like for like
    old = build_decoder(old_config)
    with torch.no_grad():  # a trained-looking head: every row different
        old.head.weight.normal_(0, 0.3)
        old.head.bias.normal_(0, 1.0)
    new = build_decoder(new_config)
    new.load_state_dict(transfer_state(old.state_dict(), old_config, new_config, new.state_dict()))
    loud = torch.linspace(-60, -10, 50).unsqueeze(0)
    f0 = torch.full((1, 50), 330.0)
    with torch.no_grad():
        a = old.controls(f0, loud) if kind == "pitched" else old.controls(loud)
        b = new.controls(f0, loud) if kind == "pitched" else new.controls(loud)
    # Band 0 (0 Hz) is the same band at both rates; per-frame networks are copied.
    torch.testing.assert_close(a["noise"][..., 0], b["noise"][..., 0])
    if kind == "pitched":
        assert b["amplitudes"].shape[-1] == 100
        torch.testing.assert_close(a["amplitudes"].sum(-1), b["amplitudes"].sum(-1))
    else:
        assert b["strikes"].shape[1] == 50 * 3
        torch.testing.assert_close(a["tonal"], b["tonal"])
    # The wet level of the room is kept: the impulse response energy scales with the rate.
    energy = [float(m.reverb.impulse_response().detach().pow(2).sum()) for m in (old, new)]
    assert energy[1] == pytest.approx(energy[0], rel=0.1)


def test_weights_of_another_width_are_refused() -> None:
    old_config = default_config("x", "pitched")
    old_config.hidden_size = 64
    new_config = default_config("x", "pitched", HIFI)
    template = build_decoder(new_config).state_dict()
    with pytest.raises(CheckpointError, match="hidden_size"):
        transfer_state(build_decoder(old_config).state_dict(), old_config, new_config, template)


def test_loss_scales_follow_the_rate() -> None:
    assert dsp.loss_fft_sizes(16_000) == (1024, 512, 256, 128, 64)
    assert dsp.loss_fft_sizes(HIFI) == (2048, 1024, 512, 256, 128, 64)


def test_filtered_noise_is_a_linear_convolution_at_any_hop() -> None:
    hop, n_frames = 441, 6
    mags = torch.rand(1, n_frames, 129, generator=torch.Generator().manual_seed(1))
    out = dsp.filtered_noise(mags, hop, torch.Generator().manual_seed(2))[0].numpy()
    noise = torch.rand(1, n_frames + 1, hop, generator=torch.Generator().manual_seed(2)) * 2 - 1
    irs = dsp.noise_filter_ir(torch.cat([mags, mags[:, -1:]], 1).float())[0].numpy()
    size = irs.shape[-1]
    full = np.zeros(n_frames * hop + hop + size)
    for t in range(n_frames + 1):
        full[t * hop : t * hop + hop + size - 1] += np.convolve(noise[0, t].numpy(), irs[t])
    start = hop // 2 + size // 2
    np.testing.assert_allclose(out, full[start : start + n_frames * hop], atol=1e-5)


def test_harmonic_synth_is_the_same_with_and_without_autograd() -> None:
    f0 = torch.linspace(200, 300, 40).unsqueeze(0)
    amps = torch.rand(1, 40, 100)
    with torch.no_grad():
        fast = dsp.harmonic_synth(f0, amps, 441, HIFI)
    slow = dsp.harmonic_synth(f0, amps.requires_grad_(True), 441, HIFI)
    torch.testing.assert_close(fast, slow.detach())


def test_a_hifi_decoder_renders_at_its_rate() -> None:
    inst = Instrument(default_config("violin", "pitched", HIFI))
    audio = inst.render(np.full(30, 440.0, np.float32), np.full(30, -20.0, np.float32))
    assert audio.shape == (30 * 441,) and np.isfinite(audio).all()


@pytest.fixture(scope="module")
def mixed_rates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint root whose violin renders at 44.1 kHz (the shipped one carried across
    rates) beside the shipped 16 kHz cello, drums and conductor."""
    from ensemble.instrument import CHECKPOINT_ROOT, save_checkpoint

    root = tmp_path_factory.mktemp("mixed")
    for name in ("cello", "drums", "conductor"):
        (root / name).symlink_to(CHECKPOINT_ROOT / name)
    base = Instrument.from_pretrained("violin")
    config = default_config("violin", "pitched", HIFI)
    config.stats = base.config.stats
    model = build_decoder(config)
    model.load_state_dict(
        transfer_state(base.model.state_dict(), base.config, config, model.state_dict())
    )
    save_checkpoint(root / "violin", config, model)
    return root


def test_perform_renders_at_the_highest_decoder_rate(mixed_rates: Path, tmp_path: Path) -> None:
    from ensemble.perform import Ensemble
    from tests.conftest import tone

    audio = np.concatenate([tone(440.0, 1.0), tone(494.0, 1.0), tone(523.0, 1.0)])
    performance = Ensemble.from_pretrained(mixed_rates).perform(audio, ["violin", "cello", "drums"])
    n = int(3.0 * HIFI)
    assert performance.sample_rate == HIFI and performance.mix.shape == (n, 2)
    assert all(stem.shape == (n, 2) for stem in performance.stems.values())
    np.testing.assert_allclose(sum(performance.stems.values()), performance.mix, atol=1e-5)
    # The 16 kHz cello was resampled: above its own Nyquist it has only the shared room's
    # return, while the 44.1 kHz violin plays there.
    freqs = np.fft.rfftfreq(n, 1 / HIFI)

    def high_share(name: str) -> float:
        power = np.abs(np.fft.rfft(performance.stems[name][:, 0])) ** 2
        return float(power[freqs > 8200].sum() / power.sum())

    assert high_share("cello") < 1e-3 and high_share("violin") > 10 * high_share("cello")
    files = performance.write(tmp_path, metrics={"ok": True})
    assert all(sf.info(f).samplerate == HIFI for f in files if f.suffix == ".wav")
    metrics = performance.metrics()
    assert metrics["mix"].duration_s == pytest.approx(3.0)


def test_the_band_above_the_old_nyquist_starts_quiet_and_ramps_smoothly() -> None:
    gain = torch.tensor(-40.0)
    f0 = torch.tensor([[1000.0, 4000.0]])
    g = dsp.band_gain(f0, 4, 8000.0, gain)[0]
    # 1-7 kHz untouched, 12 kHz and above 40 dB down, 8 kHz (the split) half way in dB.
    torch.testing.assert_close(g[0, :3], torch.ones(3))
    torch.testing.assert_close(g[1, 2:], torch.full((2,), 0.01))
    assert 20 * math.log10(float(g[1, 1])) == pytest.approx(-20.0, abs=0.1)
    sweep = dsp.band_gain(torch.linspace(7000, 9000, 200)[None], 1, 8000.0, gain)[0, :, 0]
    assert float((20 * torch.log10(sweep)).diff().abs().max()) < 0.5  # no jump in level


def test_a_decoder_carried_to_44k_sounds_like_the_16k_one() -> None:
    from ensemble.audio import resample
    from ensemble.features import track_pitch

    base = Instrument.from_pretrained("violin")
    config = default_config("violin", "pitched", HIFI)
    model = build_decoder(config)
    model.load_state_dict(
        transfer_state(base.model.state_dict(), base.config, config, model.state_dict())
    )
    f0 = np.full(200, 440.0, np.float32) * 2 ** (np.repeat(np.arange(4), 50) / 12)
    loud = np.full(200, -25.0, np.float32)
    old, new = base.render(f0, loud), Instrument(config, model).render(f0, loud)
    rms = [float(np.sqrt(np.mean(x**2))) for x in (old, new)]
    assert abs(20 * math.log10(rms[1] / rms[0])) < 2.0
    _, confidence = track_pitch(resample(new, HIFI, 16_000))
    assert np.median(confidence) > 0.9  # still a pitched instrument, not noise
    power = np.abs(np.fft.rfft(new)) ** 2
    high = power[np.fft.rfftfreq(len(new), 1 / HIFI) > 8000].sum() / power.sum()
    assert -60 < 10 * math.log10(high) < -30  # present, and quiet
