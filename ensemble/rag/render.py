"""Audio of a continuation: the input's ending, equal-power seams, then the retrieved chunks.

Each retrieved chunk brings a short pre-roll (the audio just before it in its source), which is
crossfaded with the last ``fade`` samples of what precedes it. The seam therefore sits exactly at
the chunk start and the chunk itself is heard whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from ensemble.audio import resample
from ensemble.config import SAMPLE_RATE
from ensemble.errors import DataError

if TYPE_CHECKING:
    from ensemble.perform import Ensemble


def read_segment(path: Path, start_s: float, seconds: float) -> np.ndarray:
    """(round(seconds * SAMPLE_RATE),) float32 mono audio of ``path`` from ``start_s``, zero-
    padded where the file ends or ``start_s`` < 0; only the needed frames are decoded."""
    n_out = round(seconds * SAMPLE_RATE)
    try:
        with sf.SoundFile(str(path)) as handle:
            sr = handle.samplerate
            first = round(start_s * sr)
            handle.seek(max(first, 0))
            data = handle.read(round(seconds * sr) + min(first, 0), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise DataError(
            f"Cannot read the indexed audio '{path}' ({exc}); was the corpus moved? Rebuild the "
            "index or put the files back."
        ) from exc
    mono = resample(data.mean(axis=1), sr, SAMPLE_RATE)
    lead = max(-first, 0) * SAMPLE_RATE // sr
    out = np.zeros(n_out, np.float32)
    body = mono[: n_out - lead]
    out[lead : lead + len(body)] = body
    return out


def equal_power_fades(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(fade_out, fade_in), each (n,), with fade_out² + fade_in² = 1 (constant power)."""
    t = (np.arange(n) + 0.5) / max(n, 1)
    return np.cos(0.5 * np.pi * t).astype(np.float32), np.sin(0.5 * np.pi * t).astype(np.float32)


def stitch(head: np.ndarray, segments: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Join ``head`` (N,) and ``(pre_roll (F,), body (M,))`` segments with equal-power seams.

    The last F samples before each seam are crossfaded with the segment's pre-roll; the output
    length is ``len(head) + Σ len(body)``.
    """
    out = [np.asarray(head, np.float32)]
    for pre_roll, body in segments:
        fade = min(len(pre_roll), len(out[-1]))
        if fade:
            fade_out, fade_in = equal_power_fades(fade)
            last = out[-1].copy()
            last[-fade:] = last[-fade:] * fade_out + pre_roll[-fade:] * fade_in
            out[-1] = last
        out.append(np.asarray(body, np.float32))
    return np.concatenate(out)


def perform(
    audio: np.ndarray, ensemble: Ensemble, instruments: list[str], leader: str | None
) -> np.ndarray:
    """Render stitched (N,) mono audio through the ensemble with the chosen instruments; returns
    the (N, 2) stereo mix."""
    return ensemble.perform(audio, instruments=instruments, leader=leader).mix
