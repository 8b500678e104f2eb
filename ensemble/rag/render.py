"""Audio of retrieved continuations: the one render path of the CLI (`continue`, `song grow`)
and the listening room.

A continuation's raw audio is the input's ending, equal-power seams, then the retrieved chunks.
Each retrieved chunk brings a short pre-roll (the audio just before it in its source), which is
crossfaded with the last ``fade`` samples of what precedes it. The seam therefore sits exactly at
the chunk start and the chunk itself is heard whole. Given a `Lineup`, the raw audio is then
performed by the ensemble.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from ensemble.audio import resample
from ensemble.config import SAMPLE_RATE
from ensemble.errors import DataError
from ensemble.rag.continuation import Continuation, Retrieval
from ensemble.rag.seam import time_stretch
from ensemble.threads import render_pool

if TYPE_CHECKING:
    from ensemble.perform import Ensemble, PerformSettings

FADE_SECONDS = 0.1  # seam crossfade: long enough to hide a click, short enough to keep onsets


def read_segment(path: Path, start_s: float, seconds: float, rate: int = SAMPLE_RATE
                 ) -> np.ndarray:  # fmt: skip
    """(round(seconds * rate),) float32 mono audio of ``path`` from ``start_s``, zero-padded where
    the file ends or ``start_s`` < 0; only the needed frames are decoded, resampled once."""
    n_out = round(seconds * rate)
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
    mono = resample(data.mean(axis=1), sr, rate)
    lead = max(-first, 0) * rate // sr
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


@dataclass
class Lineup:
    """Who performs a continuation: the ensemble, its instruments, the leader and the controls."""

    ensemble: Ensemble
    instruments: list[str]
    leader: str | None = None
    settings: PerformSettings | None = None

    def play(self, audio: np.ndarray) -> tuple[np.ndarray, int]:
        """(N,) mono at SAMPLE_RATE → the (M, 2) stereo mix and its rate (the decoders')."""
        performance = self.ensemble.perform(audio, self.instruments, self.leader, self.settings)
        return performance.mix, performance.sample_rate


def render_continuations(
    found: Retrieval,
    lineup: Lineup | None = None,
    *,
    rate: int = SAMPLE_RATE,
    finish: Callable[[int, Continuation], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Continuation]:
    """``found``'s continuations with their raw ``audio`` and, given ``lineup``, their ``mix``.

    Raw audio comes at ``rate`` when nothing performs it (e.g. `Retrieval.output_rate`, so the
    retrieved material keeps its own quality); a lineup analyses it at SAMPLE_RATE.
    ``finish(i, rendered)`` runs in the worker as the i-th is done (the app writes and measures
    it there, in parallel); ``progress(done, total)`` in the caller's thread.
    """
    raw_rate = SAMPLE_RATE if lineup else rate
    head = found.ending(raw_rate)

    def render(i: int, item: Continuation) -> Continuation:
        raw = _stitched(found, item, head, raw_rate)
        mix, mix_rate = lineup.play(raw) if lineup else (None, raw_rate)
        done = replace(item, audio=raw, audio_rate=raw_rate, mix=mix, mix_rate=mix_rate)
        if finish is not None:
            finish(i, done)
        return done

    total = len(found.continuations)
    # Decoders run batch-1 GRUs on one intra-op thread (see ensemble.threads) and release the
    # GIL, so continuations render one per core; each one's decoders share its cores.
    with render_pool(total, "render") as pool:
        futures = {pool.submit(render, i, item): i for i, item in enumerate(found.continuations)}
        rendered: dict[int, Continuation] = {}
        for future in as_completed(futures):
            rendered[futures[future]] = future.result()
            if progress is not None:
                progress(len(rendered), total)
    return [rendered[i] for i in range(total)]


def _stitched(found: Retrieval, item: Continuation, head: np.ndarray, rate: int) -> np.ndarray:
    """The query's ending ``head``, then each hop's planned material after an equal-power seam,
    at ``rate``."""
    per_hop = found.seconds / len(item.rows)
    fade = round(FADE_SECONDS * rate)
    pieces = []
    for row, plan in zip(item.rows, item.plans, strict=True):
        # Read what the stretched segment needs, with its pre-roll, and stretch both together.
        raw = read_segment(
            found.index.source_path(row),
            plan.start_s - FADE_SECONDS * plan.rate,
            (FADE_SECONDS + per_hop) * plan.rate,
            rate,
        )
        played = time_stretch(raw, plan.rate)
        body = np.zeros(round(per_hop * rate), np.float32)
        tail = played[fade : fade + len(body)]
        body[: len(tail)] = tail
        pieces.append((played[:fade], body))
    return stitch(head, pieces)
