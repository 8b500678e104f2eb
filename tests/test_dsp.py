"""Physics of the DSP core: where energy lands in frequency and time, not just tensor shapes."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from ensemble import dsp
from ensemble.config import HOP_LENGTH, SAMPLE_RATE

torch.set_num_threads(1)  # two busy-waiting threads crawl on a shared 2-core machine


def _spectrum(audio: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Power spectrum (dB re max) of a 1-D signal with a Hann window, and its frequencies."""
    x = audio.detach().double().numpy()
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    return 10 * np.log10(power / power.max() + 1e-30), np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)


def _one_harmonic(n_harm: int, which: int = 0, frames: int = 100) -> torch.Tensor:
    amps = torch.zeros(1, frames, n_harm)
    amps[..., which] = 1.0
    return amps


def test_upsample_frames_hits_frame_values_and_interpolates() -> None:
    frames = torch.tensor([[0.0, 1.0, 3.0]])
    up = dsp.upsample_frames(frames, hop=4)
    assert up.shape == (1, 12)
    assert torch.allclose(up[0, ::4], frames[0])
    assert torch.allclose(up[0, :4], torch.tensor([0.0, 0.25, 0.5, 0.75]))
    assert torch.allclose(up[0, 8:], torch.full((4,), 3.0))  # last frame held
    assert dsp.upsample_frames(torch.ones(2, 5, 3), hop=7).shape == (2, 35, 3)


def test_one_harmonic_at_440_peaks_at_440() -> None:
    audio = dsp.harmonic_synth(torch.full((1, 100), 440.0), _one_harmonic(60))[0]
    assert audio.shape == (100 * HOP_LENGTH,)
    db, freqs = _spectrum(audio)
    assert abs(freqs[np.argmax(db)] - 440.0) <= 1.0
    assert np.max(db[np.abs(freqs - 440.0) > 20]) < -60  # a pure tone, nothing else
    assert audio.abs().max() == pytest.approx(1.0, abs=1e-3)


def test_third_harmonic_lands_at_three_times_f0() -> None:
    audio = dsp.harmonic_synth(torch.full((1, 100), 220.0), _one_harmonic(10, which=2))[0]
    db, freqs = _spectrum(audio)
    assert abs(freqs[np.argmax(db)] - 660.0) <= 1.0


def test_harmonics_above_nyquist_are_silent() -> None:
    f0 = torch.full((1, 100), 3000.0)
    amps = dsp.harmonic_amplitudes(torch.ones(1, 100), torch.ones(1, 100, 60), f0)
    # Only harmonics 1 and 2 (3 and 6 kHz) are below 8 kHz; the amplitude is shared by them.
    assert torch.allclose(amps[0, 0, :2], torch.full((2,), 0.5))
    assert amps[..., 2:].abs().max() == 0
    db, freqs = _spectrum(dsp.harmonic_synth(f0, torch.ones(1, 100, 60))[0])
    away = (np.abs(freqs - 3000) > 30) & (np.abs(freqs - 6000) > 30)
    assert np.max(db[away]) < -60  # aliases of 9, 12, ... kHz would land at 7, 4, 1 kHz


def test_glide_across_nyquist_does_not_alias() -> None:
    # f0 glides 3.5 → 4.5 kHz: harmonic 2 sweeps 7 → 9 kHz. Once it passes 8 kHz an alias would
    # sweep down from 8 kHz; the only legitimate content above 5 kHz is harmonic 2 below Nyquist.
    f0 = torch.linspace(3500.0, 4500.0, 200).unsqueeze(0)
    audio = dsp.harmonic_synth(f0, torch.ones(1, 200, 2))
    spec = torch.stft(audio, 512, 128, window=torch.hann_window(512), return_complex=True)
    power = spec.abs()[0] ** 2  # (257, frames)
    late = power[:, 130:]  # frames where f0 > ~4.15 kHz, so 2·f0 > 8.3 kHz
    band = late[160:250].sum() / late.sum()  # 5 - 7.8 kHz
    assert band < 1e-4


def test_phase_is_continuous_and_precise_over_a_minute() -> None:
    f0 = 440.0 + 200.0 * torch.sin(torch.linspace(0, 20, 6000)).unsqueeze(0)
    phase = dsp.oscillator_phase(f0)
    assert phase.min() >= 0 and phase.max() < 2 * math.pi
    # Reference: float64 integration of the same upsampled f0.
    ref = torch.cumsum(dsp.upsample_frames(f0.double()) / SAMPLE_RATE, 1) * 2 * math.pi
    ref = ref - dsp.upsample_frames(f0.double()) / SAMPLE_RATE * 2 * math.pi
    err = torch.remainder(phase.double() - ref + math.pi, 2 * math.pi) - math.pi
    assert err.abs().max() < 1e-4  # even after 60 s and ~26k cycles
    audio = dsp.harmonic_synth(f0[:, :300], _one_harmonic(4, frames=300))[0]
    step = 2 * math.pi * 640.0 / SAMPLE_RATE  # largest per-sample phase step
    assert (audio[1:] - audio[:-1]).abs().max() < step * 1.01  # no clicks


def test_long_renders_are_chunked_without_seams(monkeypatch: pytest.MonkeyPatch) -> None:
    f0 = 200.0 + 50.0 * torch.rand(2, 90)
    amps = torch.rand(2, 90, 16)
    whole = dsp.harmonic_synth(f0, amps)
    monkeypatch.setitem(dsp._BANK_CHUNK, "cpu", 2 * 16 * HOP_LENGTH * 7)  # 7 frames per chunk
    assert torch.allclose(dsp.harmonic_synth(f0, amps), whole, atol=1e-5)


def test_gradients_reach_amplitudes_not_f0() -> None:
    f0 = torch.full((1, 20), 300.0, requires_grad=True)
    amps = torch.rand(1, 20, 8, requires_grad=True)
    dsp.harmonic_synth(f0, amps).pow(2).sum().backward()
    assert amps.grad is not None and amps.grad.abs().sum() > 0
    assert f0.grad is None


def test_sinusoid_bank_puts_each_partial_at_its_frequency() -> None:
    freqs = torch.tensor([50.0, 120.0])
    amps = torch.zeros(1, 100, 2)
    amps[..., 1] = 1.0
    db, hz = _spectrum(dsp.sinusoid_synth(freqs, amps)[0])
    assert abs(hz[np.argmax(db)] - 120.0) <= 1.0


def _band_power_db(audio: torch.Tensor, n_bands: int) -> np.ndarray:
    """Average power (dB) of ``audio`` (B, N) in n_bands linear bands up to Nyquist."""
    spec = torch.stft(audio, 256, 64, window=torch.hann_window(256), return_complex=True)
    power = (spec.abs() ** 2).mean(dim=(0, 2)).numpy()  # 129 bins
    edges = np.linspace(0, len(power), n_bands + 1).astype(int)
    return np.array([10 * np.log10(power[a:b].mean()) for a, b in itertools.pairwise(edges)])


def test_filtered_noise_spectrum_follows_its_bands() -> None:
    gen = torch.Generator().manual_seed(0)
    bands = torch.full((65,), 1e-3)
    bands[8:24] = 1.0  # pass 1 - 3 kHz
    bands[40:48] = 0.1  # a second, 20 dB quieter band at 5 - 6 kHz
    audio = dsp.filtered_noise(bands.expand(4, 200, 65), generator=gen)
    assert audio.shape == (4, 200 * HOP_LENGTH)
    level = _band_power_db(audio, 16)  # 500 Hz bands
    passband, quiet, stop = level[2:6].mean(), level[10:12].mean(), level[14:].mean()
    assert passband - stop > 35
    assert 15 < passband - quiet < 25
    # Unit magnitude ≈ unit gain: uniform noise has variance 1/3, 16/64 of it passes.
    assert audio.var().item() == pytest.approx(16 / 64 / 3, rel=0.25)


def test_filtered_noise_follows_band_changes_in_time() -> None:
    mags = torch.zeros(1, 100, 65)
    mags[:, 50:] = 1.0  # silent, then broadband from frame 50 (centred on sample 8000)
    audio = dsp.filtered_noise(mags, generator=torch.Generator().manual_seed(1))[0]
    onset = 50 * HOP_LENGTH
    assert audio[: onset - HOP_LENGTH].abs().max() < 1e-6
    assert audio[onset + HOP_LENGTH :].std() > 0.3


def test_one_shots_start_in_their_slot_scaled_by_the_strike() -> None:
    hop, per_frame = HOP_LENGTH, 4
    step = hop // per_frame
    shots = torch.stack([torch.linspace(1.0, 0.0, 300), -torch.ones(300) * 0.5])  # (K=2, L)
    strikes = torch.zeros(1, 10 * per_frame, 2)
    strikes[0, 3 * per_frame + 2, 0] = 0.5  # frame 3, third slot, shot 0
    strikes[0, 6 * per_frame, 1] = 2.0  # frame 6, first slot, shot 1
    audio = dsp.one_shot_synth(strikes, shots, hop, per_frame)[0]
    assert audio.shape == (10 * hop,)
    first = 3 * hop - hop // 2 + 2 * step
    second = 6 * hop - hop // 2
    assert torch.all(audio[:first] == 0)
    assert audio[first] == pytest.approx(0.5)  # strike × the shot's first sample
    assert audio[first + 299] == pytest.approx(0.5 * shots[0, 299].item())
    assert torch.all(audio[first + 300 : second] == 0)  # the first shot has ended
    assert audio[second : second + 300] == pytest.approx(torch.full((300,), -1.0))


def test_one_shot_waveforms_learn_from_the_loss() -> None:
    shots = torch.zeros(1, 200, requires_grad=True)
    strikes = torch.zeros(1, 20, 1)
    strikes[0, 5, 0] = 1.0
    target = dsp.one_shot_synth(strikes, torch.randn(1, 200), HOP_LENGTH)
    loss = (dsp.one_shot_synth(strikes, shots, HOP_LENGTH) - target).pow(2).sum()
    loss.backward()
    assert shots.grad is not None and shots.grad.abs().sum() > 0


def test_fft_convolve_matches_numpy() -> None:
    x, h = torch.randn(2, 300), torch.randn(40)
    ref = np.stack([np.convolve(row, h.numpy())[:300] for row in x.numpy()])
    assert np.allclose(dsp.fft_convolve(x, h).numpy(), ref, atol=1e-4)


def test_reverb_is_a_decaying_tail_and_learnable() -> None:
    reverb = dsp.Reverb(seconds=0.5, decay_seconds=0.08, wet_db=-20.0)
    impulse = torch.zeros(1, 16000)
    impulse[0, 0] = 1.0
    out = reverb(impulse)[0]
    assert out[0].item() == pytest.approx(1.0, abs=0.05)  # dry path
    tail = out[1:8000].detach()
    assert 10 * math.log10(tail.pow(2).sum()) == pytest.approx(-20.0, abs=1.0)
    assert tail[:800].pow(2).sum() > 10 * tail[-800:].pow(2).sum()  # decays
    out.pow(2).sum().backward()
    assert reverb.log_decay.grad is not None and reverb.log_gain.grad is not None


def test_loss_is_zero_for_identical_audio_and_grows_with_difference() -> None:
    gen = torch.Generator().manual_seed(0)
    x = 0.3 * torch.sin(2 * math.pi * 440 * torch.arange(16000) / SAMPLE_RATE).unsqueeze(0)
    noise = torch.randn(1, 16000, generator=gen)
    assert dsp.multiscale_spectral_loss(x, x).item() == 0.0
    losses = [dsp.multiscale_spectral_loss(x + a * noise, x).item() for a in (1e-3, 1e-2, 1e-1)]
    assert losses[0] < losses[1] < losses[2]
    near = dsp.multiscale_spectral_loss(x * 1.1, x).item()
    far = dsp.multiscale_spectral_loss(x * 2.0, x).item()
    assert 0 < near < far


def test_loss_gradient_drives_harmonic_amplitudes_toward_target() -> None:
    f0 = torch.full((1, 50), 330.0)
    wanted = torch.tensor([0.5, 0.25, 0.1, 0.05]).expand(1, 50, 4)
    target = dsp.harmonic_synth(f0, wanted)
    logits = torch.zeros(4, requires_grad=True)  # one amplitude per harmonic, all frames
    opt = torch.optim.Adam([logits], lr=0.1)
    losses = []
    for _ in range(40):
        amps = dsp.exp_sigmoid(logits).expand(1, 50, 4)
        loss = dsp.multiscale_spectral_loss(dsp.harmonic_synth(f0, amps), target, (512, 128))
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.2 * losses[0]
    assert torch.allclose(dsp.exp_sigmoid(logits), wanted[0, 0], atol=0.03)


def test_hz_to_midi_is_one_convention_in_torch_and_numpy() -> None:
    from ensemble.features import hz_to_midi
    from ensemble.instrument import MIDI_RANGE, scale_f0

    hz = np.array([-5.0, 0.0, 1e-4, 8.1758, 261.6256, 440.0, 4186.01])
    midi = dsp.hz_to_midi(torch.tensor(hz, dtype=torch.float64)).numpy()
    assert np.allclose(midi, hz_to_midi(hz), atol=1e-4)
    assert midi[0] == midi[1] == hz_to_midi(np.array([0.0]))[0] == 0.0  # no pitch is 0, not -inf
    assert np.allclose(midi[3:], [0.0, 60.0, 69.0, 108.0], atol=1e-3)
    # the decoders clamp to MIDI_RANGE, so no pitch and a sub-audio pitch reach them alike
    scaled = scale_f0(torch.tensor([0.0, 1e-4, 1.0], dtype=torch.float32))
    assert torch.allclose(scaled, torch.full((3,), MIDI_RANGE[0] / 127.0))
