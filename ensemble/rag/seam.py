"""Beat-aligned seams: where in its source a retrieved continuation starts, and at what speed.

A chunk is indexed on a 1 s hop, so its start rarely falls where the query's bar stands when it
stops. The seam is moved (by less than half a bar) to the point of the source's bar that comes
next in the query's bar: a query ending just before beat 3 continues from the source's beat 3
(when both bars have the same number of beats; otherwise from the next beat). A source whose
tempo is within `scoring.MAX_STRETCH` of the query's is time-stretched to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ensemble.rag.scoring import MAX_STRETCH


@dataclass(frozen=True)
class Pulse:
    """Where a piece of music stands in its bar."""

    tempo: float  # beats per minute (0: unknown)
    meter: int  # beats per bar
    bar_pos: float  # beats since the last bar line


@dataclass(frozen=True)
class SeamPlan:
    """How one retrieved segment joins what precedes it."""

    start_s: float  # where the segment starts in its source
    rate: float  # time-stretch rate (query tempo / source tempo; 1 = played as it is)
    shift_beats: float  # how far the start moved from the chunk start
    phase_error_ms: float  # estimated offset left between the two beat grids at the seam
    per_beat: float = 1.0  # query beats per source beat (2 or 1/2: a pulse heard an octave off)


def _wrap(beats: float, period: float) -> float:
    """``beats`` folded into [-period/2, period/2)."""
    return float((beats + period / 2) % period - period / 2)


def plan_seam(
    chunk_start_s: float,
    source: Pulse,
    query: Pulse,
    duration_s: float,
    seconds: float,
    blocked: Sequence[tuple[float, float]] = (),
) -> SeamPlan:
    """Align a chunk starting at ``chunk_start_s`` (with ``source`` pulse there) to ``query``.

    Args:
        chunk_start_s: the indexed chunk's start in its source.
        source: tempo, meter and bar position of the source at the chunk start.
        query: tempo, meter and bar position where the continuation must start.
        duration_s: length of the source.
        seconds: how much of the source the continuation plays (before stretching).
        blocked: ``[start, end)`` spans of the source the played material must not overlap
            (what the input or another hop of the same chain already plays).

    Returns:
        The plan; with an unknown tempo the chunk start is kept and the error is 0.
    """
    if source.tempo <= 0 or query.tempo <= 0:
        return SeamPlan(chunk_start_s, 1.0, 0.0, 0.0)
    ratio = query.tempo / source.tempo
    # Query beats per source beat: 2 or 1/2 when one side's pulse was heard an octave off (the
    # other's whole bars and beats still line up), else 1.
    per = next((k for k in (1.0, 2.0, 0.5) if max(ratio / k, k / ratio) <= MAX_STRETCH), 1.0)
    rate = ratio / per if max(ratio / per, per / ratio) <= MAX_STRETCH else 1.0
    period_s = 60.0 / source.tempo
    latest = max(duration_s - seconds * rate, 0.0)
    # Bars that nest (equal, or 2 and 4 beats): land on the query's place in the shorter bar;
    # else only on its place in the beat.
    common = min(source.meter, query.meter)
    nested = common > 0 and max(source.meter, query.meter) % common == 0
    cycles = [float(common), 1.0 / per] if nested and per == 1 else [1.0 / per]
    for cycle in cycles:
        shift = _wrap(query.bar_pos / per - source.bar_pos, cycle)
        for option in sorted((shift, shift + cycle, shift - cycle), key=abs):
            start = chunk_start_s + option * period_s
            end = start + seconds * rate
            free = all(end <= a or start >= b for a, b in blocked)
            if 0.0 <= start <= latest and free:
                return SeamPlan(start, rate, option, 0.0, per)
    error = _wrap(query.bar_pos - per * source.bar_pos, 1.0) * 60.0 / query.tempo * 1000.0
    return SeamPlan(chunk_start_s, rate, 0.0, abs(error), per)


def time_stretch(audio: np.ndarray, rate: float) -> np.ndarray:
    """``audio`` played ``rate`` times faster without changing its pitch (phase vocoder)."""
    if abs(rate - 1.0) < 1e-3:
        return np.asarray(audio, np.float32)
    import librosa

    return librosa.effects.time_stretch(np.asarray(audio, np.float32), rate=rate)


def after(pulse: Pulse, seconds: float) -> Pulse:
    """The pulse ``seconds`` later at a steady tempo."""
    beats = seconds * pulse.tempo / 60.0
    return Pulse(pulse.tempo, pulse.meter, float((pulse.bar_pos + beats) % max(pulse.meter, 1)))
