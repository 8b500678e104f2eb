"""The unit every loader yields, and the helpers the loaders share."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ensemble.config import HOP_LENGTH, SAMPLE_RATE
from ensemble.errors import DataError

log = logging.getLogger(__name__)

F0_SOURCES = ("midi", "annotation", "tracker")
LENGTH_TOLERANCE_S = 0.05  # stems of one track may differ by resampling rounding, not more
F0_TOLERANCE_FRAMES = 2  # ground-truth f0 may be this many frames off the audio length


class MalformedTrackWarning(UserWarning):
    """A track was skipped because its files are missing, unreadable or inconsistent."""


@dataclass
class StemExample:
    """One instrument stem of one track, aligned on the project frame grid.

    ``audio`` is (N,) float32 mono at SAMPLE_RATE (None for symbolic scores); ``f0_hz`` and
    ``loudness_db`` are (T,) with T = N // HOP_LENGTH (for scores, T follows the notes);
    ``f0_hz`` is 0 where no note sounds (always 0 for drums).
    """

    track: str
    stem: str
    instrument: str  # canonical name, see ensemble.data.instruments
    is_drum: bool
    role: str  # "leader" (melody stem) | "follower"
    split: str | None
    audio: np.ndarray | None
    f0_hz: np.ndarray
    loudness_db: np.ndarray
    f0_source: str  # "midi" | "annotation" | "tracker"

    @property
    def n_frames(self) -> int:
        return len(self.f0_hz)


@dataclass(frozen=True)
class TrackRef:
    """Where one track of a dataset lives, enough to load it in another process."""

    layout: str  # "slakh" | "urmp" | "symbolic"
    track: str
    split: str | None
    path: Path  # track folder (slakh, urmp) or score file (symbolic)
    number: int | None = None  # tune number inside a multi-tune ABC file


def warn_skip(track: str, reason: str) -> None:
    """Report a malformed track that is skipped (as a warning and in the log)."""
    message = f"Skipping track '{track}': {reason}"
    log.warning(message)
    warnings.warn(message, MalformedTrackWarning, stacklevel=3)


def read_mono(path: Path) -> np.ndarray:
    """(N,) float32 mono at SAMPLE_RATE from any soundfile-readable file (resampled if needed).

    Raises:
        DataError: the file is missing or cannot be decoded.
    """
    import soundfile as sf

    from ensemble.audio import resample

    if not path.is_file():
        raise DataError(f"audio file '{path.name}' is missing")
    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise DataError(f"audio file '{path.name}' cannot be decoded ({exc})") from exc
    return np.ascontiguousarray(resample(data.mean(axis=1), int(sr), SAMPLE_RATE), np.float32)


def n_samples_of(path: Path) -> int:
    """Length of an audio file in samples at SAMPLE_RATE, from its header (no decoding)."""
    import soundfile as sf

    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise DataError(f"audio file '{path.name}' cannot be decoded ({exc})") from exc
    return round(info.frames * SAMPLE_RATE / info.samplerate)


def check_lengths(track_lengths: dict[str, int]) -> int:
    """Common length of a track's audio files, trimmed to whole frames.

    Args:
        track_lengths: file or stem name -> samples at SAMPLE_RATE.

    Raises:
        DataError: lengths differ by more than LENGTH_TOLERANCE_S.
    """
    longest, shortest = max(track_lengths.values()), min(track_lengths.values())
    if longest - shortest > LENGTH_TOLERANCE_S * SAMPLE_RATE:
        detail = ", ".join(f"{k}: {v / SAMPLE_RATE:.2f} s" for k, v in track_lengths.items())
        raise DataError(f"its audio files have mismatched lengths ({detail})")
    return shortest - shortest % HOP_LENGTH


def fit_frames(f0: np.ndarray, n_frames: int, what: str) -> np.ndarray:
    """Pad or trim a (T',) ground-truth f0 to n_frames; DataError if it is far off."""
    if abs(len(f0) - n_frames) > F0_TOLERANCE_FRAMES:
        raise DataError(
            f"{what} has {len(f0)} frames but the audio has {n_frames}; the lengths do not match"
        )
    out = np.zeros(n_frames, np.float32)
    out[: min(n_frames, len(f0))] = f0[:n_frames]
    return out


def tracked_f0(audio: np.ndarray) -> np.ndarray:
    """(T,) f0 from the project's pitch tracker, 0 where it finds no voiced pitch."""
    from ensemble.features import VOICED_THRESHOLD, track_pitch

    f0, confidence = track_pitch(audio)
    return np.where(confidence >= VOICED_THRESHOLD, f0, 0.0).astype(np.float32)


def loudness(audio: np.ndarray) -> np.ndarray:
    """(T,) A-weighted loudness in dB (ensemble.features)."""
    from ensemble.features import a_weighted_loudness

    return a_weighted_loudness(audio)
