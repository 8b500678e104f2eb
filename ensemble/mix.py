"""The mix stage: stems balanced by loudness, placed in stereo, in one room, at a loudness target.

Pure functions on numpy arrays at SAMPLE_RATE. Mono signals are (N,), stereo ones (N, 2) with
columns (left, right). Loudness is integrated loudness per ITU-R BS.1770 (K-weighted, gated), in
LUFS, measured as `pyloudnorm` measures it (`ensemble.loudness`); level differences are in LU.

Signal flow of one stem (``mix_stems``)::

    decoder output (N,) ─┬─ constant-power pan ─────────┐
                         └─ send ─ shared room IR (N, 2) ┴─ + ─ × balance ─ × user ─ × mix level

The room is linear and every stem has its own return, so the stems still sum exactly to the mix.
One constant gain per stem: the conductor's loudness curves stay the dynamics within the stem.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ensemble import filters, loudness
from ensemble.config import SAMPLE_RATE
from ensemble.controls import db_to_gain

LEADER, BASS, HARMONY, DRUMS = "leader", "bass", "harmony", "drums"

# Loudness of each role relative to the leader (LU): the melody on top, the bass close under it
# (it carries the harmony's root and is heard through the K-weighting's low-cut), the drums a
# little under the bass and the inner harmony parts furthest back, where they colour, not compete.
ROLE_OFFSET_LU = {LEADER: 0.0, BASS: -4.0, HARMONY: -6.0, DRUMS: -5.0}
# Where balanced stems sit before the mix is levelled; any value works since the mix level is set
# afterwards, but a realistic one keeps intermediate signals in a sane range.
REFERENCE_LUFS = -20.0
# A stem needing more than this to reach its target is all but silent (a part the conductor left
# resting): lifting it further would bring decoder noise to the front.
MAX_BOOST_DB = 40.0
MIX_TARGET_LUFS = -14.0  # streaming-platform loudness
TRUE_PEAK_CEILING_DBTP = -1.0  # headroom for lossy encoders' inter-sample overs
# A peak limiter lets the mix reach its loudness target: its gain falls over 20 ms before a peak
# and recovers over 20 ms after, and never takes more than 6 dB (more is heard as pumping); the
# rest the level gives up.
LIMITER_WINDOW_S = 0.02
MAX_LIMITING_DB = 6.0
LIMITER_MARGIN_DB = 0.1  # the limiter aims this far under the ceiling (the filter's ripple)
PEAK_LIMITED_LU = 0.5  # a mix this far under its target says the ceiling kept it there
OVERSAMPLING = 4  # true peak per BS.1770-4 Annex 2
OVERSAMPLING_TAPS = 49  # 12 per phase, as the Annex's filter: within 0.02 dB, 40% faster than 81
ENVELOPE_BLOCK = 1 << 16  # samples of `peak_envelope` per step

BASS_INSTRUMENTS = frozenset({"bass", "double_bass", "tuba"})
BASS_REGISTER_MIDI = 48.0  # a follower whose training pitch averages under C3 plays the bass line

# Pan positions in [-1 (left), 1 (right)]. Leader and bass in the centre, where the low end and
# the melody belong; drums near it; harmony parts alternate outwards, highest first on the left
# (violins left, cellos right, as an orchestra sits).
CENTRE_PANS = {LEADER: 0.0, BASS: 0.0, DRUMS: 0.1}
HARMONY_PANS = (-0.5, 0.5, -0.3, 0.3, -0.7, 0.7)

# The shared room: a small hall. Reverb sends per role keep the bass and drums drier (mud and
# smeared transients otherwise), the leader and the harmony parts more in the room.
REVERB_SEND_DB = {LEADER: -15.0, BASS: -24.0, HARMONY: -11.0, DRUMS: -18.0}
ROOM_SECONDS = 1.6
ROOM_RT60_LOW_S = 1.2  # decay below ROOM_SPLIT_HZ
ROOM_RT60_HIGH_S = 0.6  # highs die faster, as air and walls absorb them
ROOM_SPLIT_HZ = 2000.0
ROOM_PREDELAY_S = 0.015
ROOM_ONSET_S = 0.005  # fade-in of the first reflections, so the return starts without a click
ROOM_SEED = 1770  # the room is the same in every performance
ROOM_BLOCK = 1 << 16  # samples per reverb FFT block (a few MB of scratch at any length)


@dataclass
class StemReport:
    """How one stem was mixed."""

    role: str  # leader | bass | harmony | drums
    pan: float  # -1 left .. 1 right
    balance_db: float  # brings the stem to its role's loudness target
    user_db: float  # the user's gain on top
    gain_db: float  # total constant gain on the decoder's output: balance + user + mix level
    lufs: float  # integrated loudness of the final stereo stem; -inf when silent


@dataclass
class MixReport:
    """Loudness and gains of a mix: what `metrics.json` reports."""

    stems: dict[str, StemReport]
    lufs: float  # integrated loudness of the final mix; -inf when silent
    true_peak_dbtp: float
    gain_db: float  # the mix level applied to every stem
    peak_limited: bool  # the ceiling kept the mix under its loudness target
    limiting_db: float = 0.0  # the limiter's deepest gain reduction (0: it did not act)
    target_lufs: float = MIX_TARGET_LUFS
    ceiling_dbtp: float = TRUE_PEAK_CEILING_DBTP

    def relative_lu(self, reference: str) -> dict[str, float]:
        """Each stem's loudness minus ``reference``'s (LU; negative = under it)."""
        base = self.stems[reference].lufs
        return {name: stem.lufs - base for name, stem in self.stems.items()}

    def to_json(self, leader: str | None = None) -> dict[str, object]:
        """JSON-ready (rounded; silence as null); ``leader`` adds each stem's LU to it."""
        relative = self.relative_lu(leader) if leader is not None and leader in self.stems else {}
        return {
            "lufs": _finite(self.lufs),
            "true_peak_dbtp": _finite(self.true_peak_dbtp),
            "target_lufs": self.target_lufs,
            "ceiling_dbtp": self.ceiling_dbtp,
            "gain_db": _finite(self.gain_db),
            "peak_limited": self.peak_limited,
            "limiting_db": round(self.limiting_db, 2),
            "stems": {
                name: {
                    "role": stem.role,
                    "pan": stem.pan,
                    "lufs": _finite(stem.lufs),
                    "lu_to_leader": _finite(relative[name]) if name in relative else None,
                    "balance_db": _finite(stem.balance_db),
                    "user_db": _finite(stem.user_db),
                    "gain_db": _finite(stem.gain_db),
                }
                for name, stem in self.stems.items()
            },
        }

    def message(self) -> str | None:
        """A sentence for the user when the ceiling kept the mix under its loudness target."""
        if not self.peak_limited:
            return None
        return (
            f"The mix is at {self.lufs:.1f} LUFS, under the {self.target_lufs:g} LUFS target: "
            f"louder, its peaks would need more than {MAX_LIMITING_DB:g} dB of limiting to stay "
            f"under {self.ceiling_dbtp:g} dBTP, so the whole mix was turned down."
        )


def _finite(value: float) -> float | None:
    return round(float(value), 2) if np.isfinite(value) else None


def integrated_loudness(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """BS.1770 integrated loudness (LUFS) of (N,) mono or (N, C) audio, C <= 5.

    A clip shorter than one 400 ms gating block is measured as a single block of its own length
    (its K-weighted mean square, still under the -70 LUFS absolute gate). Returns -inf for
    silence, an empty clip, or audio whose every block is under the absolute gate.
    """
    if len(audio) == 0:
        return float("-inf")
    return loudness.integrated_loudness(audio, sample_rate, min(0.4, len(audio) / sample_rate))


def oversampling_taps() -> np.ndarray:
    """(OVERSAMPLING_TAPS,) low-pass for 4x oversampling: a Kaiser-windowed sinc cut at the
    original Nyquist, unit DC gain times 4 (what scipy's firwin + resample_poly use)."""
    m = np.arange(OVERSAMPLING_TAPS) - (OVERSAMPLING_TAPS - 1) / 2
    taps = np.sinc(m / OVERSAMPLING) * np.kaiser(OVERSAMPLING_TAPS, 5.0)
    return (taps * OVERSAMPLING / taps.sum()).astype(np.float32)


def peak_envelope(audio: np.ndarray) -> np.ndarray:
    """(N,) largest |value| at or between each sample and the next, over all channels of (N,) or
    (N, C) audio: the samples and their 4× oversampled values (BS.1770-4 Annex 2).

    Polyphase: the upsampled signal's phase p is the input filtered by every 4th tap from p, so
    four short numpy convolutions replace one long one (scipy's resample_poly to 1e-4 dB).
    """
    audio = np.asarray(audio, np.float32)
    frames = audio.reshape(len(audio), -1)
    envelope = np.abs(frames[:, 0])
    for channel in frames.T[1:]:
        np.maximum(envelope, np.abs(channel), out=envelope)
    for start in range(0, len(audio), ENVELOPE_BLOCK):  # a long mix: a block of scratch at once
        stop = min(start + ENVELOPE_BLOCK, len(audio))
        np.maximum(envelope[start:stop], _oversampled_peaks(frames, start, stop),
                   out=envelope[start:stop])  # fmt: skip
    return envelope


def _oversampled_peaks(frames: np.ndarray, start: int, stop: int) -> np.ndarray:
    """(stop - start,) largest |value| of the 4× oversampled phases of (N, C) ``frames`` at
    samples start..stop, from the input samples those outputs need (the same sums as
    convolving the whole signal)."""
    taps = oversampling_taps()
    delay = (OVERSAMPLING_TAPS - 1) // 2 // OVERSAMPLING  # the filter's delay, input samples
    reach = -(-OVERSAMPLING_TAPS // OVERSAMPLING) - 1  # samples of the past a phase reads
    low = max(0, start + delay - reach)
    segment = frames[low : stop + delay]
    peaks = np.zeros(stop - start, np.float32)
    for channel in segment.T:
        channel = np.ascontiguousarray(channel)
        for phase in range(OVERSAMPLING):
            filtered = np.convolve(channel, taps[phase::OVERSAMPLING])
            first = start + delay - low
            np.maximum(peaks, np.abs(filtered[first : first + stop - start]), out=peaks)
    return peaks


def true_peak_dbtp(audio: np.ndarray) -> float:
    """True peak (dBTP) of (N,) or (N, C) audio: the largest |sample| after 4× oversampling
    (BS.1770-4 Annex 2), or of the samples themselves if larger; -inf for silence."""
    if np.asarray(audio).size == 0:
        return float("-inf")
    return _db(float(peak_envelope(audio).max()))


def limiter_gain(
    envelope: np.ndarray, ceiling_dbtp: float, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """(N,) gain in (0, 1] that keeps audio of peak ``envelope`` (N,) (see `peak_envelope`)
    under ``ceiling_dbtp`` true peak.

    The gain each sample needs is held at its minimum over ±LIMITER_WINDOW_S, then averaged over
    half that span: every average is over values at most the need of the sample it lands on, so
    the gain never exceeds what a peak needs, and it moves smoothly (no clicks, no distortion of
    a single waveform cycle). One gain for all channels keeps the image.
    """
    ceiling = 10.0 ** ((ceiling_dbtp - LIMITER_MARGIN_DB) / 20.0)
    need = np.minimum(1.0, ceiling / np.maximum(envelope, 1e-12))
    window = max(1, round(LIMITER_WINDOW_S * sample_rate))
    held = filters.sliding_minimum(need, 2 * window + 1)
    return filters.moving_average(held, window + 1).astype(np.float32)


def pan_gains(position: float) -> tuple[float, float]:
    """Constant-power (sine/cosine) pan law: (left, right) gains with left² + right² = 1.

    ``position`` runs from -1 (left) through 0 (centre, both -3 dB) to 1 (right).
    """
    angle = (float(np.clip(position, -1.0, 1.0)) + 1.0) * np.pi / 4.0
    return float(np.cos(angle)), float(np.sin(angle))


def pan(audio: np.ndarray, position: float) -> np.ndarray:
    """(N,) mono → (N, 2) placed at ``position`` with the constant-power law."""
    left, right = pan_gains(position)
    return np.multiply.outer(np.asarray(audio, np.float32), np.float32([left, right]))


def downmix(audio: np.ndarray) -> np.ndarray:
    """(N, C) → (N,) mono as the mean of the channels; (N,) passes through. For analysis
    (metrics, plots, pitch tracking), which all take mono."""
    audio = np.asarray(audio, np.float32)
    return audio.mean(axis=1) if audio.ndim == 2 else audio


@functools.cache
def room_impulse_response(sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(M, 2) float32 impulse response of the shared room, unit energy per channel.

    Deterministic noise with an exponential decay per band (highs faster than lows), one noise
    sequence per channel so left and right are decorrelated (width without a phantom centre).
    Read-only: it is cached.
    """
    n = round(ROOM_SECONDS * sample_rate)
    t = np.arange(n)[:, None] / sample_rate
    noise = np.random.default_rng(ROOM_SEED).standard_normal((n, 2))
    split = filters.biquad_response([filters.butter_lowpass2(ROOM_SPLIT_HZ, sample_rate)])
    low = filters.causal_filter(noise, split)
    # amplitude falls 60 dB at RT60: 10 ** (-3 t / RT60)
    ir = low * 10 ** (-3 * t / ROOM_RT60_LOW_S) + (noise - low) * 10 ** (-3 * t / ROOM_RT60_HIGH_S)
    ir *= np.clip(t / ROOM_ONSET_S, 0.0, 1.0)
    ir = np.concatenate([np.zeros((round(ROOM_PREDELAY_S * sample_rate), 2)), ir])
    ir /= np.sqrt(np.sum(ir**2, axis=0))
    ir = ir.astype(np.float32)
    ir.setflags(write=False)
    return ir


@functools.lru_cache(maxsize=4)
def _room_spectrum(n_fft: int, sample_rate: int) -> np.ndarray:
    """(n_fft // 2 + 1, 2) complex64 spectrum of the room, transformed once per rate."""
    spectrum = np.fft.rfft(room_impulse_response(sample_rate), n_fft, axis=0)
    spectrum.setflags(write=False)  # shared by every caller of the cache
    return spectrum


def reverb_return(audio: np.ndarray, send_db: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(N,) mono → (N, 2): ``audio`` sent at ``send_db`` into the shared room (FFT convolution,
    overlap-added in ROOM_BLOCK pieces so the scratch stays small on long stems; the tail past N
    is cut, as the stem ends there)."""
    n = len(audio)
    wet = np.zeros((n, 2), np.float32)
    taps = len(room_impulse_response(sample_rate))
    n_fft = filters.fast_length(ROOM_BLOCK + taps - 1)
    room = _room_spectrum(n_fft, sample_rate)
    gain = np.float32(db_to_gain(send_db))
    for start in range(0, n, ROOM_BLOCK):
        piece = np.asarray(audio[start : start + ROOM_BLOCK], np.float32) * gain
        spectrum = np.fft.rfft(piece, n_fft)[:, None] * room
        stop = min(n, start + len(piece) + taps - 1)
        wet[start:stop] += np.fft.irfft(spectrum, n_fft, axis=0)[: stop - start]
    return wet


def assign_roles(
    leader: str, kinds: Mapping[str, str], pitch_means: Mapping[str, float]
) -> dict[str, str]:
    """Role of every instrument: leader, drums (by kind), bass, or harmony.

    Args:
        leader: the instrument playing the melody.
        kinds: name -> "pitched" | "drums" for every instrument, the leader included.
        pitch_means: name -> mean MIDI pitch of the decoder's training audio
            (``Instrument.stats["pitch_midi_mean"]``) for the pitched ones.

    Bass: a bass-register instrument by name (`BASS_INSTRUMENTS`), or the lowest pitched
    follower when its mean pitch is under `BASS_REGISTER_MIDI`. Every other follower: harmony.
    """
    roles = {}
    for name, kind in kinds.items():
        if name == leader:
            roles[name] = LEADER
        elif kind == "drums":
            roles[name] = DRUMS
        else:
            roles[name] = BASS if name in BASS_INSTRUMENTS else HARMONY
    pitched = [n for n, role in roles.items() if role in (BASS, HARMONY)]
    if pitched:
        lowest = min(pitched, key=lambda n: pitch_means[n])
        if pitch_means[lowest] < BASS_REGISTER_MIDI:
            roles[lowest] = BASS
    return roles


def default_pans(roles: Mapping[str, str], pitch_means: Mapping[str, float]) -> dict[str, float]:
    """Pan position of every instrument by role (`CENTRE_PANS`); harmony parts take
    `HARMONY_PANS` in turn, from the highest mean pitch down."""
    harmony = sorted(
        (n for n, role in roles.items() if role == HARMONY), key=lambda n: -pitch_means[n]
    )
    spread = {n: HARMONY_PANS[i % len(HARMONY_PANS)] for i, n in enumerate(harmony)}
    return {n: spread[n] if n in spread else CENTRE_PANS[role] for n, role in roles.items()}


def mix_stems(
    dry: Mapping[str, np.ndarray],
    roles: Mapping[str, str],
    pans: Mapping[str, float],
    *,
    gains_db: Mapping[str, float] | None = None,
    target_lufs: float = MIX_TARGET_LUFS,
    ceiling_dbtp: float = TRUE_PEAK_CEILING_DBTP,
    sample_rate: int = SAMPLE_RATE,
) -> tuple[np.ndarray, dict[str, np.ndarray], MixReport]:
    """Balance, place and level decoder outputs into a stereo mix.

    Args:
        dry: name -> (N,) mono decoder output (the same N for all).
        roles: name -> role (`assign_roles`); sets the loudness target and the reverb send.
        pans: name -> position in [-1, 1] (`default_pans`).
        gains_db: the user's gain per stem (dB), applied on top of the balance.
        target_lufs: integrated loudness of the mix, unless ``ceiling_dbtp`` forbids it.
        ceiling_dbtp: the mix's true peak never passes this; no limiter, the level gives way.

    Returns:
        (mix (N, 2), stems name -> (N, 2), report); the stems, float32, sum to the mix.
        Each stem sits at ``ROLE_OFFSET_LU[role] + gains_db[name]`` LU from a leader at 0;
        a silent stem keeps 0 dB of balance.
    """
    gains_db = gains_db or {}
    placed = {
        name: _place(audio, roles[name], pans[name], gains_db.get(name, 0.0), sample_rate)
        for name, audio in dry.items()
    }
    premix = np.zeros_like(next(iter(placed.values())).audio)
    for stem in placed.values():  # summed in place, a channel at a time: little scratch
        for c in range(premix.shape[1]):
            premix[:, c] += stem.audio[:, c] * np.float32(db_to_gain(stem.gain_db))
    lufs = integrated_loudness(premix, sample_rate)
    envelope = peak_envelope(premix)
    level_db, limiter = _level(premix, envelope, lufs, target_lufs, ceiling_dbtp, sample_rate)
    for stem in placed.values():  # each placed stem is scaled where it lies
        stem.audio *= (np.float32(db_to_gain(stem.gain_db + level_db)) * limiter)[:, None]
    mix = premix  # the premix is done with: its buffer takes the mix
    mix.fill(0.0)
    for stem in placed.values():
        mix += stem.audio
    report = _mix_report(placed, mix, lufs, envelope, level_db, limiter, target_lufs,
                         ceiling_dbtp, sample_rate)
    return mix, {name: stem.audio for name, stem in placed.items()}, report


@dataclass
class _Placed:
    """One stem on its way into the mix: panned with its reverb at unit gain, then scaled."""

    audio: np.ndarray  # (N, 2)
    lufs: float  # at unit gain
    role: str
    pan: float
    balance_db: float
    user_db: float

    @property
    def gain_db(self) -> float:
        """Balance and the user's gain, before the mix is levelled."""
        return self.balance_db + self.user_db


def _place(audio: np.ndarray, role: str, position: float, user_db: float, sample_rate: int
           ) -> _Placed:
    """The stem at unit gain and its balance: its role's offset from the reference level (at
    most MAX_BOOST_DB up; 0 when silent)."""
    unit = reverb_return(audio, REVERB_SEND_DB[role], sample_rate)
    unit += pan(audio, position)  # added in place: a long stem is not held three times
    lufs = integrated_loudness(unit, sample_rate)
    balance = (min(REFERENCE_LUFS + ROLE_OFFSET_LU[role] - lufs, MAX_BOOST_DB)
               if np.isfinite(lufs) else 0.0)  # fmt: skip
    return _Placed(unit, lufs, role, position, balance, user_db)


def _mix_report(
    placed: dict[str, _Placed],
    mix: np.ndarray,
    premix_lufs: float,
    envelope: np.ndarray,
    level_db: float,
    limiter: np.ndarray,
    target_lufs: float,
    ceiling_dbtp: float,
    sample_rate: int,
) -> MixReport:
    limited = bool(limiter.min() < 1.0)
    reports = {}
    for name, stem in placed.items():
        gain_db = stem.gain_db + level_db
        reports[name] = StemReport(
            role=stem.role,
            pan=float(stem.pan),
            balance_db=stem.balance_db,
            user_db=stem.user_db,
            gain_db=gain_db,
            # a constant gain moves loudness exactly (but for the -70 LUFS gate); the limiter's
            # does not, so limited stems are measured again
            lufs=integrated_loudness(stem.audio, sample_rate) if limited else stem.lufs + gain_db,
        )
    final_lufs = integrated_loudness(mix, sample_rate) if limited else premix_lufs + level_db
    return MixReport(
        stems=reports,
        lufs=final_lufs,
        # the limiter's gain is smooth, so the mix's peaks are the premix's peaks times it
        true_peak_dbtp=_db(float(np.max(envelope * limiter)) * db_to_gain(level_db)),
        gain_db=level_db,
        peak_limited=bool(np.isfinite(premix_lufs)
                          and final_lufs < target_lufs - PEAK_LIMITED_LU),
        limiting_db=float(-20.0 * np.log10(max(float(limiter.min()), 1e-12))),
        target_lufs=target_lufs,
        ceiling_dbtp=ceiling_dbtp,
    )


def _db(amplitude: float) -> float:
    return 20.0 * float(np.log10(amplitude)) if amplitude > 0 else float("-inf")


def _level(
    premix: np.ndarray,
    envelope: np.ndarray,
    lufs: float,
    target_lufs: float,
    ceiling_dbtp: float,
    sample_rate: int,
) -> tuple[float, np.ndarray]:
    """(mix level in dB, limiter gain (N,)): the level that reaches ``target_lufs`` with at most
    MAX_LIMITING_DB of limiting, lowered where the peaks would need more. ``envelope`` is the
    premix's `peak_envelope`."""
    level_db = target_lufs - lufs if np.isfinite(lufs) else 0.0
    excess = _db(float(envelope.max())) + level_db - ceiling_dbtp
    if excess > MAX_LIMITING_DB:
        level_db -= excess - MAX_LIMITING_DB
    if excess <= 0:
        return level_db, np.ones(len(premix), np.float32)
    limiter = limiter_gain(envelope * db_to_gain(level_db), ceiling_dbtp, sample_rate)
    # Limiting takes some loudness away; give it back once, within the same limiting depth.
    limited = premix * (limiter * np.float32(db_to_gain(level_db)))[:, None]
    lost = lufs + level_db - integrated_loudness(limited, sample_rate)
    if excess <= MAX_LIMITING_DB and lost > 0.05:
        level_db += min(lost, MAX_LIMITING_DB - excess)
        limiter = limiter_gain(envelope * db_to_gain(level_db), ceiling_dbtp, sample_rate)
    return level_db, limiter
