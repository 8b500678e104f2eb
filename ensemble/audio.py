"""Audio input and output: anything a user can upload becomes mono float32 at SAMPLE_RATE.

`load_audio` is the single gate for user audio. Every failure is an `AudioInputError` whose message
says what is wrong and what to do; clipped input is accepted with a warning because it is still
music, just loud.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

from ensemble.config import MAX_SECONDS, MIN_SECONDS, SAMPLE_RATE, SILENCE_DBFS
from ensemble.errors import AudioInputError

AudioSource = str | Path | tuple[np.ndarray, int]
SUPPORTED = "WAV, FLAC, OGG or MP3"


class ClippingWarning(UserWarning):
    """The input reaches full scale on many samples; it is used as is."""


def resample(audio: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Band-limited resampling of a (N,) signal: soxr high quality, what librosa.resample calls
    (used directly: importing librosa costs a second and ~150 MB for this one call)."""
    if sr_in == sr_out:
        return audio
    import soxr

    out = soxr.resample(np.asarray(audio, np.float32), sr_in, sr_out, quality="soxr_hq")
    length = int(np.ceil(len(audio) * sr_out / sr_in))  # librosa's fix_length
    return np.pad(out[:length], (0, max(0, length - len(out)))).astype(np.float32)


def _to_float(data: np.ndarray) -> np.ndarray:
    """Integer PCM arrays become [-1, 1) floats; float arrays are passed through."""
    if np.issubdtype(data.dtype, np.integer):
        info = np.iinfo(data.dtype)
        scale = float(max(abs(info.min), info.max))
        offset = 0.0 if info.min < 0 else (info.max + 1) / 2.0  # unsigned 8-bit PCM is offset
        return ((data.astype(np.float64) - offset) / (scale - offset)).astype(np.float32)
    return data.astype(np.float32, copy=False)


def _read_file(path: Path, max_seconds: float, trim: bool) -> tuple[np.ndarray, int]:
    """Read at most what will be used: the length comes from the header first, so refusing a
    long file (or keeping the first ``max_seconds`` of one) never decodes the rest of it."""
    if not path.exists():
        raise AudioInputError(f"Audio file '{path.name}' does not exist.")
    if path.is_dir():
        raise AudioInputError(f"'{path.name}' is a folder; give one {SUPPORTED} file.")
    if path.stat().st_size == 0:
        raise AudioInputError(f"'{path.name}' is empty (0 bytes); upload a {SUPPORTED} file.")
    name = f"'{path.name}'"
    try:
        info = sf.info(str(path))
        sr = int(info.samplerate)
        _check_rate(name, sr)
        if info.frames > 0 and info.frames / sr > max_seconds and not trim:
            raise _too_long(name, info.frames / sr, max_seconds)
        frames = min(info.frames, int(max_seconds * sr)) if info.frames > 0 else -1
        data, _ = sf.read(str(path), frames=frames, always_2d=True, dtype="float32")
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        with path.open("rb") as handle:
            head = handle.read(12)
        if _looks_like_audio(head):
            raise AudioInputError(
                f"{name} looks like audio but is corrupt or truncated and cannot be "
                f"decoded; export it again as {SUPPORTED}."
            ) from exc
        raise AudioInputError(
            f"{name} is not an audio file Ensemble can read; upload {SUPPORTED}."
        ) from exc
    return data, sr


def _check_rate(name: str, sr: int) -> None:
    if sr < 4000 or sr > 384_000:
        raise AudioInputError(f"{name} has an implausible sample rate of {sr} Hz.")


def _too_long(name: str, seconds: float, max_seconds: float) -> AudioInputError:
    return AudioInputError(
        f"{name} is {seconds:.1f} s long; the maximum is {max_seconds:g} s. Trim it, or "
        f"let Ensemble keep the first {max_seconds:g} s (trim option)."
    )


def _looks_like_audio(head: bytes) -> bool:
    """Magic numbers of the containers we accept, to tell 'corrupt audio' from 'not audio'."""
    return (
        head.startswith((b"RIFF", b"fLaC", b"OggS", b"ID3", b"FORM"))
        or (len(head) > 1 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0)  # MPEG frame sync
    )


def load_audio(
    source: AudioSource,
    *,
    max_seconds: float = MAX_SECONDS,
    trim: bool = False,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """Load and validate user audio.

    Args:
        source: a file path, or a ``(samples, sample_rate)`` tuple with samples shaped (N,),
            (N, C) or (C, N) for C <= 8 channels, integer PCM or float.
        max_seconds: longest accepted input; longer input is refused unless ``trim`` is set.
        trim: keep the first ``max_seconds`` of a longer input instead of refusing it.
        sample_rate: rate of the result (analysis runs at ``SAMPLE_RATE``; output may not).

    Returns:
        (N,) float32 mono signal at ``sample_rate``.

    Raises:
        AudioInputError: empty, not audio, corrupt, NaN/inf, silent, too short or too long.
    """
    name, data, sr = _decode(source, max_seconds, trim)
    if data.size == 0 or data.shape[0] == 0:
        raise AudioInputError(f"{name} contains no audio samples; upload a recording.")
    _check_rate(name, sr)
    if not np.all(np.isfinite(data)):
        raise AudioInputError(
            f"{name} contains NaN or infinite samples; re-export it from your editor."
        )
    mono = data.mean(axis=1) if data.ndim == 2 else data
    mono = _within_length(name, mono, sr, max_seconds, trim)
    return np.ascontiguousarray(resample(_audible(name, mono).astype(np.float32), sr, sample_rate))


def native_rate(source: AudioSource) -> int:
    """The sample rate ``source`` comes at (a file's, from its header)."""
    if isinstance(source, tuple):
        return int(source[1])
    try:
        return int(sf.info(str(source)).samplerate)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioInputError(f"'{Path(source).name}' cannot be read ({exc}).") from exc


def _decode(source: AudioSource, max_seconds: float, trim: bool
            ) -> tuple[str, np.ndarray, int]:
    """(name for messages, (N, C) float samples, sample rate) of a path or an array."""
    if isinstance(source, tuple):
        data, sr = np.asarray(source[0]), int(source[1])
        if data.ndim == 2 and data.shape[0] <= 8 < data.shape[1]:
            data = data.T  # channels-first arrays (as from librosa) become (N, C)
        return "the input", _to_float(
            data.reshape(len(data), -1) if data.ndim else data.reshape(0, 1)), sr
    path = Path(source)
    return f"'{path.name}'", *_read_file(path, max_seconds, trim)


def _within_length(name: str, mono: np.ndarray, sr: int, max_seconds: float, trim: bool
                   ) -> np.ndarray:
    """Too short refused; too long refused, or cut to ``max_seconds`` with ``trim``."""
    seconds = len(mono) / sr
    if seconds < MIN_SECONDS:
        raise AudioInputError(
            f"{name} is {seconds:.2f} s long; Ensemble needs at least {MIN_SECONDS:g} s to "
            "analyse pitch and loudness."
        )
    if seconds > max_seconds:
        if not trim:
            raise _too_long(name, seconds, max_seconds)
        mono = mono[: int(max_seconds * sr)]
    return mono


def _audible(name: str, mono: np.ndarray) -> np.ndarray:
    """Silence refused, clipping warned about, float overshoot scaled back to full scale."""
    peak = float(np.max(np.abs(mono)))
    if peak <= 10 ** (SILENCE_DBFS / 20):
        raise AudioInputError(
            f"{name} is silent (peak below {SILENCE_DBFS:g} dBFS); record or upload something "
            "audible."
        )
    clipped = float(np.mean(np.abs(mono) >= 0.999))
    if clipped > 0.001:
        warnings.warn(
            f"{name} is clipped ({clipped:.1%} of samples at full scale); it is used as is, but "
            "distortion will colour the pitch tracking.",
            ClippingWarning,
            stacklevel=3,  # the caller of load_audio
        )
    if peak > 1.0:
        mono = mono / peak  # float files may exceed full scale; keep the shape, not the overshoot
    return mono


def write_audio(path: str | Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write (N,) mono or (N, C) multichannel float audio (e.g. a stereo mix, (N, 2)) as 16-bit
    PCM, clipped to [-1, 1]; the format follows the suffix (.wav, .flac, .ogg)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clipped = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    subtype = "VORBIS" if path.suffix.lower() == ".ogg" else "PCM_16"
    sf.write(path, clipped, sample_rate, subtype=subtype)
    return path


def fingerprint(audio: np.ndarray) -> str:
    """Stable identity of a signal: sha256 of its samples as little-endian float32.

    Pass the array the pipeline used (after `load_audio`), not the uploaded file's bytes, so two
    encodings of the same audio share a fingerprint (ratings, caches).
    """
    return hashlib.sha256(np.ascontiguousarray(audio, dtype="<f4").tobytes()).hexdigest()
