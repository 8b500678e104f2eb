"""Differentiable DSP core: additive harmonics, filtered noise, reverb and the spectral loss.

Pure, vectorised torch functions; the decoders in `ensemble.instrument` only compose them. Control
signals live on the frame grid of `ensemble.config` (frame ``t`` is centred on sample ``t * hop``)
and are upsampled to audio rate inside the synthesisers.

Speed notes (the synth runs in every training step and in every render):
- The harmonic bank is laid out as ``(B, T, K, hop)`` so that amplitude interpolation and the sum
  over harmonics become one batched matmul per pair of neighbouring frames, instead of an upsampled
  ``(B, N, K)`` amplitude tensor that autograd would have to keep.
- The bank depends only on f0, which is an input, so it is built without autograd.
- Phase is accumulated in float64 cycles and wrapped before scaling by the harmonic number, which
  keeps float32 phase exact for minutes of audio.
- Noise is filtered per frame by FFT convolution (a few hundred samples per frame), not in the
  time domain.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ensemble.config import HOP_LENGTH, SAMPLE_RATE

# Harmonic-bank chunk sizes (float32 elements). On CPU, buffers above glibc's mmap threshold
# (32 MB) are fresh pages on every call and the page faults cost 5-7x the sin itself (measured: 4 ms
# vs 28 ms per 10 s of audio), so the bank is built in ~8 MB chunks; GPUs prefer few big launches.
_BANK_CHUNK = {"cpu": 1 << 21, "cuda": 1 << 26}
PHASE_CHUNK_FRAMES = 2048  # frames per step of `oscillator_phase` (~15 MB of scratch at 16 kHz)
NOISE_CHUNK_FRAMES = 2048  # frames per step of `filtered_noise` (~10 MB of scratch)


def exp_sigmoid(x: torch.Tensor, exponent: float = 10.0, max_value: float = 2.0) -> torch.Tensor:
    """DDSP's positive output nonlinearity: ``max_value * sigmoid(x) ** ln(exponent) + 1e-7``.

    It spans many decades (good for amplitudes heard in dB) and has no dead zone like ReLU.
    """
    return max_value * torch.sigmoid(x) ** math.log(exponent) + 1e-7


def hz_to_midi(f0_hz: torch.Tensor) -> torch.Tensor:
    """MIDI note number of a frequency in Hz; no pitch (<= 0 Hz) is 0, as features.hz_to_midi."""
    return torch.where(f0_hz > 0, 69.0 + 12.0 * torch.log2(f0_hz.clamp(min=1e-6) / 440.0), 0.0)


def midi_to_hz(midi: torch.Tensor) -> torch.Tensor:
    """Frequency in Hz of a (fractional) MIDI note number."""
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def upsample_frames(frames: torch.Tensor, hop: int = HOP_LENGTH) -> torch.Tensor:
    """Linear interpolation from frame rate to sample rate.

    Args:
        frames: (B, T) or (B, T, C) values at frame centres ``t * hop``.
        hop: samples per frame.

    Returns:
        (B, T * hop) or (B, T * hop, C); sample ``t * hop + h`` mixes frames t and t + 1 with
        weight ``h / hop`` (the last frame is held).
    """
    squeeze = frames.dim() == 2
    x = frames.unsqueeze(-1) if squeeze else frames
    batch, n_frames, channels = x.shape
    nxt = torch.cat([x[:, 1:], x[:, -1:]], dim=1)
    w = torch.arange(hop, device=x.device, dtype=x.dtype).div_(hop).view(1, 1, hop, 1)
    out = x.unsqueeze(2) * (1.0 - w) + nxt.unsqueeze(2) * w
    out = out.reshape(batch, n_frames * hop, channels)
    return out.squeeze(-1) if squeeze else out


def oscillator_phase(
    f0_hz: torch.Tensor,
    hop: int = HOP_LENGTH,
    sample_rate: int = SAMPLE_RATE,
    initial_phase: torch.Tensor | None = None,
) -> torch.Tensor:
    """Wrapped phase in radians of an oscillator following a frame-rate f0 track.

    Args:
        f0_hz: (B, T) fundamental in Hz.
        initial_phase: optional (B,) phase of the first sample, radians.

    Returns:
        (B, T * hop) float32 phase in [0, 2π), the running integral of the upsampled f0.
    """
    f0 = f0_hz.detach().double()
    batch, n_frames = f0.shape
    phase = torch.empty(batch, n_frames * hop, device=f0.device)
    running = torch.zeros(batch, 1, dtype=torch.float64, device=f0.device)
    # A chunk of frames at a time (the float64 scratch of a 2-minute input at once is ~60 MB);
    # the running sum seeds each chunk's cumsum, so the sums are the whole signal's.
    for start in range(0, n_frames, PHASE_CHUNK_FRAMES):
        stop = min(start + PHASE_CHUNK_FRAMES, n_frames)
        # one look-ahead frame: the chunk's last frame interpolates toward the next as a whole
        up = upsample_frames(f0[:, start : stop + 1], hop)[:, : (stop - start) * hop]
        step = up / sample_rate
        seeded = torch.cat([step[:, :1] + running, step[:, 1:]], dim=1)
        total = torch.cumsum(seeded, dim=1)
        running = total[:, -1:]
        cycles = total - step  # exclusive: the first sample sits at the initial phase
        if initial_phase is not None:
            cycles = cycles + initial_phase.detach().double().unsqueeze(1) / (2.0 * math.pi)
        phase[:, start * hop : stop * hop] = (2.0 * math.pi * torch.frac(cycles)).float()
    return phase


def nyquist_mask(
    f0_hz: torch.Tensor, n_harmonics: int, sample_rate: int = SAMPLE_RATE
) -> torch.Tensor:
    """(B, T, K) float mask: 1 where harmonic ``k * f0`` lies below Nyquist, else 0."""
    k = torch.arange(1, n_harmonics + 1, device=f0_hz.device, dtype=f0_hz.dtype)
    return (f0_hz.unsqueeze(-1) * k < sample_rate / 2.0).to(f0_hz.dtype)


def harmonic_amplitudes(
    amplitude: torch.Tensor,
    distribution: torch.Tensor,
    f0_hz: torch.Tensor,
    sample_rate: int = SAMPLE_RATE,
) -> torch.Tensor:
    """Per-harmonic amplitudes from an overall amplitude and a harmonic distribution.

    Args:
        amplitude: (B, T) or (B, T, 1) overall amplitude (>= 0).
        distribution: (B, T, K) non-negative weights, normalised here after removing harmonics
            above Nyquist, so the overall amplitude is preserved whatever the pitch.
        f0_hz: (B, T) fundamental.

    Returns:
        (B, T, K) amplitudes, zero above Nyquist.
    """
    if amplitude.dim() == 2:
        amplitude = amplitude.unsqueeze(-1)
    dist = distribution * nyquist_mask(f0_hz.detach(), distribution.shape[-1], sample_rate)
    dist = dist / dist.sum(dim=-1, keepdim=True).clamp_min(1e-7)
    return amplitude * dist


def band_gain(
    f0_hz: torch.Tensor, n_harmonics: int, split_hz: float, gain_db: torch.Tensor
) -> torch.Tensor:
    """(B, T, K) gain per harmonic: 1 below ``split_hz``, ``gain_db`` above it, with a smooth
    1/6-octave ramp between, so a partial gliding across the split never jumps in level.

    Args:
        f0_hz: (B, T) fundamental.
        gain_db: scalar tensor (learnable).
    """
    k = torch.arange(1, n_harmonics + 1, device=f0_hz.device, dtype=torch.float32)
    octaves = torch.log2(f0_hz.detach().float().clamp_min(1.0).unsqueeze(-1) * k / split_hz)
    above = ((octaves + 1.0 / 12.0) * 6.0).clamp(0.0, 1.0)
    return torch.pow(10.0, gain_db * above / 20.0)


def _interpolated_sum(
    bank: torch.Tensor, amplitudes: torch.Tensor, keep: torch.Tensor | None = None
) -> torch.Tensor:
    """Σ_k bank[..., k, h] · amp_k(t + h/hop) for a bank of T frames.

    Args:
        bank: (B or 1, T, K, hop) oscillator samples.
        amplitudes: (B, T, K) or (B, T + 1, K) frame amplitudes; a (T + 1)-th frame is the
            look-ahead used to interpolate the last frame (otherwise that frame is held).
        keep: optional (B, T, 1, K) 0/1 mask per frame interval and partial.

    Returns:
        (B, T, hop). Linear interpolation is split into two matmuls (frames t and t + 1), so the
        audio-rate amplitudes are never materialised.
    """
    n_frames, hop = bank.shape[1], bank.shape[-1]
    if amplitudes.shape[1] == n_frames:
        amplitudes = torch.cat([amplitudes, amplitudes[:, -1:]], dim=1)
    pair = torch.stack([amplitudes[:, :n_frames], amplitudes[:, 1 : n_frames + 1]], dim=2)
    if keep is not None:
        pair = pair * keep
    mixed = torch.matmul(pair, bank)  # (B, T, 2, hop)
    w = torch.arange(hop, device=bank.device, dtype=bank.dtype).div_(hop)
    return mixed[:, :, 0] * (1.0 - w) + mixed[:, :, 1] * w


def harmonic_synth(
    f0_hz: torch.Tensor,
    amplitudes: torch.Tensor,
    hop: int = HOP_LENGTH,
    sample_rate: int = SAMPLE_RATE,
    initial_phase: torch.Tensor | None = None,
) -> torch.Tensor:
    """Additive synthesis of K harmonics of a time-varying fundamental.

    Args:
        f0_hz: (B, T) fundamental in Hz; treated as a constant (no gradient flows into it).
        amplitudes: (B, T, K) per-harmonic amplitudes (see `harmonic_amplitudes`).
        initial_phase: optional (B,) starting phase of the fundamental.

    Returns:
        (B, T * hop) audio. Harmonic k has phase ``k · φ(n)`` where φ integrates the upsampled f0.
        A harmonic sounds over a frame interval only if it is below Nyquist at both ends; f0 is
        interpolated linearly in between, so no partial ever crosses Nyquist (no aliasing).
    """
    batch, n_frames, n_harm = amplitudes.shape
    with torch.no_grad():
        f0 = f0_hz.detach().float()
        phase = oscillator_phase(f0, hop, sample_rate, initial_phase)
        k = torch.arange(1, n_harm + 1, device=amplitudes.device, dtype=torch.float32).view(-1, 1)
        f0_next = torch.cat([f0[:, 1:], f0[:, -1:]], dim=1)
        keep = nyquist_mask(torch.maximum(f0, f0_next), n_harm, sample_rate).unsqueeze(2)
    budget = _BANK_CHUNK.get(amplitudes.device.type, _BANK_CHUNK["cpu"])
    chunk = max(1, budget // (batch * n_harm * hop))
    # Without autograd one bank buffer serves every chunk: a fresh multi-MB tensor per chunk
    # costs as much in page faults as the sines themselves (2x at 44.1 kHz). Training keeps one
    # bank per chunk, since backward needs them all.
    reuse = not (torch.is_grad_enabled() and amplitudes.requires_grad)
    shape = (batch, min(chunk, n_frames), n_harm, hop)
    buffer = torch.empty(shape, device=amplitudes.device) if reuse else None
    pieces = []
    for start in range(0, n_frames, chunk):
        stop = min(start + chunk, n_frames)
        with torch.no_grad():
            ph = phase[:, start * hop : stop * hop].reshape(batch, stop - start, 1, hop)
            out = None if buffer is None else buffer[:, : stop - start]
            bank = torch.mul(ph, k, out=out).sin_()  # (B, n, K, hop)
        # Interpolation needs the frame after the chunk, so pass one look-ahead amplitude frame.
        amps = amplitudes[:, start : min(stop + 1, n_frames)]
        pieces.append(_interpolated_sum(bank, amps, keep[:, start:stop]).reshape(batch, -1))
    return torch.cat(pieces, dim=1)


def sinusoid_synth(
    frequencies_hz: torch.Tensor,
    amplitudes: torch.Tensor,
    hop: int = HOP_LENGTH,
    sample_rate: int = SAMPLE_RATE,
    first_sample: int = 0,
) -> torch.Tensor:
    """Bank of fixed-frequency sinusoids with frame-rate amplitudes (the drums' tonal body).

    Args:
        frequencies_hz: (K,) constant partial frequencies.
        amplitudes: (B, T, K) amplitudes.
        first_sample: index of the first output sample in the whole signal (phases are absolute,
            so a stream rendering frames from t on passes ``t * hop``).

    Returns:
        (B, T * hop) audio.
    """
    batch, n_frames, n_part = amplitudes.shape
    rates = frequencies_hz.detach().double().view(-1, 1) / sample_rate
    # Chunks of frames, as in `harmonic_synth`: a (K, N) float64 bank of a 2-minute input
    # would be hundreds of MB.
    budget = _BANK_CHUNK.get(amplitudes.device.type, _BANK_CHUNK["cpu"])
    chunk = max(1, budget // (n_part * hop))
    pieces = []
    for start in range(0, n_frames, chunk):
        stop = min(start + chunk, n_frames)
        with torch.no_grad():
            n = torch.arange(
                first_sample + start * hop,
                first_sample + stop * hop,
                device=amplitudes.device,
                dtype=torch.float64,
            )
            # in place: one float64 bank of scratch, not four
            bank = (rates * n).frac_().mul_(2.0 * math.pi).sin_().float()  # (K, n)
            bank = bank.view(n_part, stop - start, hop).transpose(0, 1).unsqueeze(0)
        amps = amplitudes[:, start : min(stop + 1, n_frames)]  # one look-ahead frame
        pieces.append(_interpolated_sum(bank, amps).reshape(batch, -1))
    return torch.cat(pieces, dim=1)


def one_shot_synth(
    strikes: torch.Tensor, shots: torch.Tensor, hop: int = HOP_LENGTH, per_frame: int = 1
) -> torch.Tensor:
    """Learned one-shot waveforms (a drum kit) struck on a grid ``per_frame`` times finer than
    the frames.

    Frame t owns the samples [t·hop - hop/2, t·hop + hop/2), and its ``per_frame`` strike slots
    start evenly inside that span. Sampled drums repeat one waveform on every hit, which noise
    cannot match: two white-noise renderings of one envelope differ as much as noise and a real
    kit do.

    Args:
        strikes: (B, T * per_frame, K) non-negative strike amplitudes.
        shots: (K, L) one-shot waveforms.

    Returns:
        (B, T * hop) audio.
    """
    batch, n_slots, _ = strikes.shape
    step = hop // per_frame
    length = n_slots * step
    # Transposed convolution with stride = one slot: every slot's strikes times the shots,
    # overlap-added.
    audio = torch.nn.functional.conv_transpose1d(
        strikes.transpose(1, 2), shots.unsqueeze(1), stride=step
    ).view(batch, -1)
    start = hop // 2  # frame t's first slot starts half a frame before the frame's centre
    missing = start + length - audio.shape[-1]
    if missing > 0:
        audio = torch.nn.functional.pad(audio, (0, missing))
    return audio[:, start : start + length]


def noise_filter_ir(magnitudes: torch.Tensor) -> torch.Tensor:
    """Windowed linear-phase FIR filters from band magnitudes.

    Args:
        magnitudes: (..., M) linear magnitudes of M bands spaced evenly from 0 Hz to Nyquist.

    Returns:
        (..., L) impulse responses, L = 2 (M - 1), centred at L / 2 and Hann-windowed so the
        frequency response is a smoothed version of the bands.
    """
    ir = torch.fft.irfft(magnitudes.to(torch.complex64), dim=-1)
    size = ir.shape[-1]
    ir = torch.roll(ir, size // 2, dims=-1)
    return ir * torch.hann_window(size, periodic=False, device=ir.device, dtype=ir.dtype)


def uniform_noise(
    batch: int, n_blocks: int, hop: int, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """(B, n_blocks, hop) white noise in [-1, 1): the raw blocks `filtered_noise` shapes."""
    noise = torch.rand(batch, n_blocks, hop, device=device, generator=generator)
    return noise.mul_(2.0).sub_(1.0)


def filter_noise_blocks(magnitudes: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Each noise block convolved (linear, by FFT) with its frame's FIR filter.

    Args:
        magnitudes: (B, n, M) band magnitudes of the blocks' frames.
        noise: (B, n, hop) noise blocks.

    Returns:
        (B, n, hop + L) filtered blocks, L = 2 (M - 1) the filter length.
    """
    ir = noise_filter_ir(magnitudes.float())  # (B, n, L)
    n_out = noise.shape[-1] + ir.shape[-1]
    # hop + L itself may be a slow FFT length (441 + 256 = 697 = 17 · 41 costs 20x 720).
    n_fft = _fast_fft_size(n_out)
    spec = torch.fft.rfft(noise, n_fft) * torch.fft.rfft(ir, n_fft)
    return torch.fft.irfft(spec, n_fft)[..., :n_out]


def noise_offset(hop: int, n_bands: int) -> int:
    """Samples by which noise block t starts before frame centre ``t * hop``: half a hop (the
    block is centred on its frame) plus the filter's delay, half its length 2 (M - 1)."""
    return hop // 2 + (n_bands - 1)


def filtered_noise(
    magnitudes: torch.Tensor,
    hop: int = HOP_LENGTH,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """White noise shaped frame by frame by time-varying band magnitudes (DDSP filtered noise).

    Each hop-long block of uniform noise, centred on its frame, is convolved (by FFT) with the
    frame's FIR filter and the blocks are overlap-added.

    Args:
        magnitudes: (B, T, M) band magnitudes, linear; M bands from 0 Hz to Nyquist.
        generator: optional torch.Generator (on the magnitudes' device) for reproducible noise.
        noise: optional (B, T + 1, hop) noise blocks to shape instead of drawing them (an
            exported model takes its noise as an input).

    Returns:
        (B, T * hop) audio.
    """
    batch, n_frames, n_bands = magnitudes.shape
    # One extra block so the second half of the last frame is covered too.
    mags = torch.cat([magnitudes, magnitudes[:, -1:]], dim=1)
    if noise is None:
        noise = uniform_noise(batch, n_frames + 1, hop, generator, magnitudes.device)
    n_out = hop + 2 * (n_bands - 1)  # a block convolved with its frame's filter
    ola = torch.zeros(batch, n_frames * hop + n_out, device=magnitudes.device)
    # Chunks of blocks, overlap-added where they land: the filtered blocks of a 2-minute input
    # at once are ~50 MB. A sample gets at most two blocks while the filter is shorter than a
    # hop, so the sums are the same whatever the chunking.
    for start in range(0, n_frames + 1, NOISE_CHUNK_FRAMES):
        stop = min(start + NOISE_CHUNK_FRAMES, n_frames + 1)
        blocks = filter_noise_blocks(mags[:, start:stop], noise[:, start:stop])  # (B, n, n_out)
        span = (stop - start - 1) * hop + n_out
        ola[:, start * hop : start * hop + span] += torch.nn.functional.fold(
            blocks.transpose(1, 2), output_size=(1, span), kernel_size=(1, n_out),
            stride=(1, hop),
        ).view(batch, span)
    offset = noise_offset(hop, n_bands)
    return ola[:, offset : offset + n_frames * hop]


def _fast_fft_size(n: int) -> int:
    """Smallest 2^a·3^b·5^c >= n: as fast as a power of two for pocketfft and cuFFT, and up to
    ~2x shorter."""
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p235 = p35 << max(0, (n - 1) // p35).bit_length()  # smallest p35·2^a >= n
            best = min(best, p235)
            p35 *= 3
        p5 *= 5
    return best


def fft_convolve(signal: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
    """Linear convolution by FFT, truncated to the signal length.

    Args:
        signal: (B, N).
        ir: (L,) or (B, L) impulse response.

    Returns:
        (B, N): ``(signal * ir)[:N]``.
    """
    n = signal.shape[-1]
    n_fft = _fast_fft_size(n + ir.shape[-1] - 1)
    out = torch.fft.irfft(torch.fft.rfft(signal, n_fft) * torch.fft.rfft(ir, n_fft), n_fft)
    return out[..., :n]


class Reverb(nn.Module):
    """Learnable room: dry signal plus exponentially decaying noise as the wet impulse response.

    The noise itself is a parameter (DDSP's trainable reverb) while the decay time and wet gain are
    explicit parameters, so training starts from a physically plausible short room.
    """

    def __init__(
        self,
        seconds: float = 0.5,
        sample_rate: int = SAMPLE_RATE,
        decay_seconds: float = 0.08,
        wet_db: float = -20.0,
    ) -> None:
        super().__init__()
        length = max(1, int(seconds * sample_rate))
        gen = torch.Generator().manual_seed(0)
        self.noise = nn.Parameter(torch.rand(length, generator=gen) * 2.0 - 1.0)
        self.log_decay = nn.Parameter(torch.tensor(math.log(decay_seconds)))
        time = torch.arange(length, dtype=torch.float32) / sample_rate
        self.register_buffer("time", time, persistent=False)
        # Initial wet energy is wet_db relative to the dry impulse.
        energy = float((self.noise.detach() * torch.exp(-time / decay_seconds)).pow(2).sum())
        self.log_gain = nn.Parameter(torch.tensor(math.log(10 ** (wet_db / 20.0) / energy**0.5)))

    def impulse_response(self) -> torch.Tensor:
        """(L,) wet impulse response (the dry path is added separately)."""
        envelope = torch.exp(-self.time / torch.exp(self.log_decay))
        return self.noise * envelope * torch.exp(self.log_gain)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, N) → (B, N) dry + wet."""
        return audio + fft_convolve(audio, self.impulse_response())


def loss_fft_sizes(sample_rate: int) -> tuple[int, ...]:
    """Multi-scale loss STFT sizes for a rate: powers of two from 64 samples up to the one nearest
    64 ms (DDSP's 2048 at 16 kHz is coarser than the 10 ms frames need; 1024 at 16 kHz, 2048 at
    44.1 kHz), so every rate weighs the same time scales."""
    top = 2 ** round(math.log2(0.064 * sample_rate))
    return tuple(2**k for k in range(int(math.log2(top)), 5, -1))


DEFAULT_FFT_SIZES = loss_fft_sizes(SAMPLE_RATE)  # (1024, 512, 256, 128, 64)


def _magnitudes(audio: torch.Tensor, n_fft: int, overlap: float) -> torch.Tensor:
    window = torch.hann_window(n_fft, device=audio.device, dtype=audio.dtype)
    hop = max(1, int(n_fft * (1.0 - overlap)))
    spec = torch.stft(audio, n_fft, hop, window=window, center=True, return_complex=True)
    return spec.abs()


def multiscale_spectral_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    fft_sizes: Sequence[int] = DEFAULT_FFT_SIZES,
    overlap: float = 0.75,
    log_weight: float = 1.0,
    eps: float = 1e-5,
) -> torch.Tensor:
    """DDSP multi-scale spectral loss: Σ_scales mean|S - Ŝ| + log_weight · mean|log S - log Ŝ|.

    Args:
        pred: (B, N) or (N,) synthesised audio.
        target: same shape, reference audio (no gradient is computed for it).
        fft_sizes: STFT sizes, Hann windows, hop = size · (1 - overlap).

    Returns:
        Scalar loss; exactly zero for identical signals.
    """
    pred = pred.float()
    target = target.float()
    total = pred.new_zeros(())
    for n_fft in fft_sizes:
        mag_p = _magnitudes(pred, n_fft, overlap)
        with torch.no_grad():
            mag_t = _magnitudes(target, n_fft, overlap)
        total = total + (mag_p - mag_t).abs().mean()
        total = total + log_weight * (torch.log(mag_p + eps) - torch.log(mag_t + eps)).abs().mean()
    return total
