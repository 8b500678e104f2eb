"""Start a decoder at a new audio rate from one trained at another (``train --init`` across rates).

Everything that runs per frame (MLPs, GRU, convolutions) is rate-free and copied as is; only what
is sized in samples or bands is mapped:

- harmonic-distribution rows: the first K kept, extra harmonics copy the highest learned one
  (the 16 kHz decoders never heard harmonics above 8 kHz, so there is nothing better to copy);
- noise-band rows: bands are evenly spaced from 0 Hz to Nyquist, so each new band takes the row of
  the old band at its frequency (linear interpolation), and bands above the old Nyquist the top
  one, quieter;
- harmonics above the old Nyquist: a learned gain (`band_split_hz`, `high_band_db`) that starts
  40 dB down;
- drum strike slots: each new slot takes the old slot nearest in time inside the frame;
- sample-length waveforms (the reverb's noise, the drum kit's one-shots): linear interpolation to
  the new length; the reverb's noise keeps its RMS and its gain is scaled by
  sqrt(old rate / new rate), so the wet level, which sums the impulse response over samples,
  stays the same.

Fine-tuning then learns what the old rate could not show (the band above its Nyquist).
"""

from __future__ import annotations

import math

import torch

from ensemble.errors import CheckpointError

# Where what the old rate could not hold starts: harmonics above its Nyquist 40 dB down (their
# rows were never trained: starting them loud taught a violin to trade its harmonics for
# noise), new noise bands about 40 dB under the old top band (exp_sigmoid ≈ 2·e^(2.3 x)).
HIGH_BAND_START_DB = -40.0
NEW_BAND_LOGIT = -2.0


def _rows_at(rows: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Rows of ``rows`` (N, ...) linearly interpolated at fractional ``positions`` (P,), clamped
    to the last row."""
    positions = positions.clamp(0, rows.shape[0] - 1)
    low = positions.floor().long()
    high = (low + 1).clamp(max=rows.shape[0] - 1)
    w = (positions - low).view(-1, *([1] * (rows.dim() - 1))).to(rows.dtype)
    return rows[low] * (1 - w) + rows[high] * w


def _band_positions(old_bands: int, old_rate: int, new_bands: int, new_rate: int) -> torch.Tensor:
    """Fractional old-band index of each new band's centre frequency."""
    freq = torch.arange(new_bands, dtype=torch.float64) * (new_rate / 2) / (new_bands - 1)
    return freq / ((old_rate / 2) / (old_bands - 1))


def _harmonic_rows(rows: torch.Tensor, new_k: int) -> torch.Tensor:
    return rows[torch.arange(new_k).clamp(max=rows.shape[0] - 1)]


def _stretch(wave: torch.Tensor, length: int) -> torch.Tensor:
    """(..., L) → (..., length) by linear interpolation."""
    shape = wave.shape
    flat = wave.reshape(1, -1, shape[-1])
    out = torch.nn.functional.interpolate(flat, size=length, mode="linear", align_corners=True)
    return out.reshape(*shape[:-1], length)


def _noise_rows(rows: torch.Tensor, old_config, new_config, key: str) -> torch.Tensor:
    """Noise-band rows at the new band frequencies; bands above the old Nyquist start
    NEW_BAND_LOGIT lower (about 40 dB under the old top band) unless it is a weight row."""
    positions = _band_positions(old_config.n_noise_bands, old_config.sample_rate,
                                new_config.n_noise_bands, new_config.sample_rate)  # fmt: skip
    mapped = _rows_at(rows, positions)
    if key.endswith("bias"):
        mapped = mapped + NEW_BAND_LOGIT * (positions > old_config.n_noise_bands - 1).to(rows.dtype)
    return mapped


def _pitched_head(old: dict, new_config, old_config, key: str) -> torch.Tensor:
    k_old = old_config.n_harmonics
    rows = old[key]
    return torch.cat([
        rows[:1],
        _harmonic_rows(rows[1 : 1 + k_old], new_config.n_harmonics),
        _noise_rows(rows[1 + k_old :], old_config, new_config, key),
    ])  # fmt: skip


def _drum_head(old: dict, new_config, old_config, key: str) -> torch.Tensor:
    m_old, tonal = old_config.n_noise_bands, old_config.n_tonal
    rows = old[key]
    shots, old_slots, new_slots = (old_config.n_one_shots, old_config.strikes_per_frame,
                                   new_config.strikes_per_frame)  # fmt: skip
    strikes = rows[1 + m_old + tonal :].reshape(old_slots, shots, *rows.shape[1:])
    nearest = torch.round(torch.arange(new_slots) * old_slots / new_slots).long()
    return torch.cat([
        rows[:1],
        _noise_rows(rows[1 : 1 + m_old], old_config, new_config, key),
        rows[1 + m_old : 1 + m_old + tonal],
        strikes[nearest.clamp(max=old_slots - 1)].reshape(-1, *rows.shape[1:]),
    ])  # fmt: skip


def transfer_state(old: dict[str, torch.Tensor], old_config, new_config,
                   template: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:  # fmt: skip
    """The state dict of a ``new_config`` decoder (shaped like ``template``) started from
    ``old``, the weights of an ``old_config`` decoder of the same kind and width.

    Raises:
        CheckpointError: the two configs differ in kind or in anything per frame.
    """
    same = ("kind", "hidden_size", "gru_layers", "mlp_layers", "conv_kernel", "conv_dilations",
            "n_tonal", "n_one_shots", "loudness_range_db")  # fmt: skip
    differ = [f for f in same if getattr(old_config, f) != getattr(new_config, f)]
    if differ:
        raise CheckpointError(
            f"--init {old_config.name!r} differs from the new decoder in {', '.join(differ)}; "
            "only the rate-sized parts (harmonics, noise bands, strikes, waveforms) can change."
        )
    head = _pitched_head if new_config.kind == "pitched" else _drum_head
    ratio = old_config.sample_rate / new_config.sample_rate
    state = {}
    for key, value in template.items():
        if key.startswith("head."):
            state[key] = head(old, new_config, old_config, key)
        elif key == "shots":  # the same waveforms in time (band-limited to the old Nyquist)
            state[key] = _stretch(old[key], value.shape[-1])
        elif key == "reverb.noise":  # the room is broadband noise: keep its RMS, which
            stretched = _stretch(old[key], value.shape[-1])  # interpolation lowers by ~1/3
            state[key] = stretched * old[key].std() / stretched.std()
        elif key == "reverb.log_gain":
            state[key] = old[key] + 0.5 * math.log(ratio)
        elif key == "high_band_db":  # the band the old rate could not hold starts near silent
            state[key] = torch.tensor(HIGH_BAND_START_DB)
        else:
            state[key] = old[key]
        if state[key].shape != value.shape:
            raise CheckpointError(f"Cannot map {key} from {old_config.name!r} to the new rate.")
    return state
