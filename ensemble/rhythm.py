"""Beat and meter of a performance input: tempo, beats, downbeats, on the feature frame.

The input is often a lone melody (a flute line, a hummed tune) whose notes glide into each other:
librosa's spectral-flux onset envelope barely moves at a legato note change. This tracker hears
notes instead: its novelty curve adds the starts of the notes segmented from the pitch track
(`ensemble.notes`) to the loudness rises, so a slurred change of pitch counts as an onset.

Then, as in Ellis's dynamic-programming tracker (2007): a tempo from the novelty's
autocorrelation under a log-normal tempo prior, and the beat sequence that best trades novelty
at the beats against deviation from that tempo. The meter (2, 3 or 4 beats a bar) and the
downbeat phase are the ones whose strong beats carry the most accent: note starts, long notes,
harmonic change (chroma) and loudness. Compound meters (6/8) are told from simple ones by where
the notes between beats fall (thirds or halves of the beat).

`bench/musicality.py` measures it against the corpus's exact beats (from MIDI), beside
`librosa.beat.beat_track` and PLP.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from ensemble.config import FRAME_RATE
from ensemble.features import FeatureFrame, hz_to_midi
from ensemble.notes import NoteEvent, loudness_rise, segment_notes

MIN_BPM, MAX_BPM = 50.0, 200.0
PRIOR_BPM, PRIOR_OCTAVES = 100.0, 0.9  # log-normal tempo prior: centre and spread (octaves)
TIGHTNESS = 30.0  # DP cost of tempo deviation, per squared log-ratio of the inter-beat interval
METERS = (4, 3, 2)  # beats per bar considered, most common first (wins ties)
# Novelty peaks trail the attacks that cause them (a 30 ms loudness rise, a pitch that must
# settle before it is a note), and the more so the slower the attack: against the corpus's exact
# beats, tracked beats sat 20 ms late in plucked folk mixes, 50-75 ms in string quartets. The lag
# is LAG_BASE_S plus LAG_PER_RISE times the clip's median 10-90% loudness rise time at its beats
# (fitted on the train and validation splits of data/corpus mixes and data/corpus_big melodies:
# 72% of tracks within 15 ms, 59% with one constant); ONSET_LAG_S where no rise can be measured.
ONSET_LAG_S = 0.03
LAG_BASE_S, LAG_PER_RISE = 0.019, 0.225
MAX_LAG_S = 0.08
RISE_DB = 3.0  # a rise smaller than this is no attack to time
STEADY_BEATS = 9  # beats in each local straight-line fit of the pulse (see `steady`)
# An off-beat phase beats the tracked one only where the novelty there is at least this share of
# the path's (melodies that shift: 0.51-0.88; mixes whose band marks the beat: 0.11-0.37).
SHIFT_NOVELTY = 0.45
METER_MARGIN = 0.15  # a less common meter must explain this much more accent to be chosen
# In a full mix the melody the pitch tracker follows jumps between voices, so its note starts
# miss many beats that a chord change marks. Chord changes (chroma flux) join the novelty with
# this weight in a polyphonic clip; in a lone melody they only blur the note starts (beat F on
# data/corpus_big melody stems 0.85 -> 0.73 at this weight), hence the polyphony gate. Fitted on
# the train and validation splits of data/corpus: beat F of full mixes 0.81 -> 0.87, seam phase
# within 35 ms at a clip's end 59% -> 70%.
CHROMA_WEIGHT, CHROMA_LAG = 2.0, 3
POLYPHONY_RAMP = (0.1, 0.4)


@dataclass
class BeatGrid:
    """Beats and bars of a clip.

    Attributes:
        beats: (B,) beat times in seconds, increasing.
        downbeats: (D,) bar starts in seconds, a subset of `beats`.
        beats_per_bar: 2, 3 or 4.
        subdivisions: notes per beat of the basic pulse: 2 (simple) or 3 (compound, e.g. 6/8).
        tempo_bpm: beats per minute.
    """

    beats: np.ndarray
    downbeats: np.ndarray
    beats_per_bar: int
    subdivisions: int
    tempo_bpm: float

    @property
    def meter(self) -> str:
        """Time signature as a musician writes it (6/8 for two compound beats)."""
        if self.subdivisions == 3:
            return f"{3 * self.beats_per_bar}/8"
        return f"{self.beats_per_bar}/4"

    @property
    def beat_index(self) -> np.ndarray:
        """(B,) position of each beat in its bar, 0 on downbeats."""
        if len(self.downbeats) == 0:
            return np.arange(len(self.beats)) % self.beats_per_bar
        first = int(np.argmin(np.abs(self.beats - self.downbeats[0])))
        return (np.arange(len(self.beats)) - first) % self.beats_per_bar

    def frame_positions(self, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
        """(beat phase (T,) in [0, 1), bar position (T,) in [0, beats_per_bar)) per frame."""
        t = np.arange(n_frames) / FRAME_RATE
        if len(self.beats) < 2:
            return np.zeros(n_frames), np.zeros(n_frames)
        period = 60.0 / self.tempo_bpm
        # Extend the beat list by one period at each end so every frame lies between two beats.
        beats = np.concatenate([[self.beats[0] - period], self.beats, [self.beats[-1] + period]])
        index = np.concatenate([[self.beat_index[0] - 1], self.beat_index, [0]])
        index[-1] = (self.beat_index[-1] + 1) % self.beats_per_bar
        index[0] %= self.beats_per_bar
        k = np.clip(np.searchsorted(beats, t, side="right") - 1, 0, len(beats) - 2)
        phase = np.clip((t - beats[k]) / (beats[k + 1] - beats[k]), 0.0, 0.999)
        return phase, index[k] + phase

    def to_json(self) -> dict:
        return {
            "tempo_bpm": round(self.tempo_bpm, 2),
            "meter": self.meter,
            "beats_s": [round(float(b), 3) for b in self.beats],
            "downbeats_s": [round(float(b), 3) for b in self.downbeats],
        }


def smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """(T,) ``x`` convolved with a Gaussian of ``sigma`` frames (truncated at 4 sigma, edges
    mirrored): scipy.ndimage.gaussian_filter1d's result on clips longer than 4 sigma, without
    importing scipy at start-up."""
    x = np.asarray(x, np.float64)
    radius = min(int(4.0 * sigma + 0.5), len(x) - 1)
    if sigma <= 0 or radius < 1:
        return x.copy()
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    padded = np.pad(x, radius, mode="symmetric")
    return np.convolve(padded, taps / taps.sum(), mode="valid")


def polyphony(features: FeatureFrame) -> float:
    """How much a clip sounds like several voices at once, in [0, 1]: its chroma's spread
    (entropy) less twice the pitch tracker's confidence, over the frames within 30 dB of its
    loudest, ramped over POLYPHONY_RAMP. (That raw difference on the train and validation splits
    of data/corpus and data/corpus_big: full mixes 0.14-1.66, lone melody stems -0.76-0.19.)"""
    active = features.loudness_db > features.loudness_db.max() - 30.0
    if not active.any():
        return 0.0
    chroma = np.asarray(features.chroma[:, active], np.float64)
    share = chroma / (chroma.sum(axis=0) + 1e-9)
    entropy = float(np.median(-(share * np.log(share + 1e-12)).sum(axis=0)))
    score = entropy - 2.0 * float(features.confidence[active].mean())
    lo, hi = POLYPHONY_RAMP
    return float(np.clip((score - lo) / (hi - lo), 0.0, 1.0))


def chroma_flux(features: FeatureFrame) -> np.ndarray:
    """(T,) harmonic change: the chroma energy gained over the last CHROMA_LAG frames."""
    chroma = np.asarray(features.chroma, np.float64)
    flux = np.zeros(features.n_frames)
    flux[CHROMA_LAG:] = np.maximum(chroma[:, CHROMA_LAG:] - chroma[:, :-CHROMA_LAG], 0.0).sum(0)
    return smooth(flux, 1.0)


def onset_novelty(features: FeatureFrame, notes: list[NoteEvent] | None = None) -> np.ndarray:
    """(T,) onset novelty: loudness rises plus the starts of segmented notes, unit variance,
    plus harmonic change in proportion to the clip's `polyphony`."""
    loud = np.maximum(np.asarray(features.loudness_db, np.float64), -80.0)
    rise = np.maximum(loudness_rise(loud), 0.0)
    if notes is None:
        notes = leader_notes(features)
    starts = np.zeros(features.n_frames)
    for n in notes:
        starts[n.start] += 1.0
    starts = smooth(starts, 1.5)
    novelty = sum(p / (p.std() + 1e-9) for p in (rise, starts))
    weight = CHROMA_WEIGHT * polyphony(features)
    if weight > 0:
        flux = chroma_flux(features)
        novelty = novelty + weight * flux / (flux.std() + 1e-9)
    return np.asarray(novelty, np.float64)


def leader_notes(features: FeatureFrame) -> list[NoteEvent]:
    """The notes of the input's (predominant) melody."""
    return segment_notes(hz_to_midi(features.f0_hz), features.voiced, features.loudness_db)


def estimate_period(novelty: np.ndarray) -> float:
    """Beat period in frames: the autocorrelation peak (with its double for metrical support)
    weighted by the log-normal tempo prior, refined between lags by a parabola."""
    x = novelty - smooth(novelty, FRAME_RATE)  # remove slow loudness swells
    n = len(x)
    spectrum = np.fft.rfft(x, 2 * n)
    ac = np.fft.irfft(spectrum * np.conj(spectrum))[:n]
    ac = ac / (ac[0] + 1e-9)
    lo = int(60.0 * FRAME_RATE / MAX_BPM)
    hi = min(int(60.0 * FRAME_RATE / MIN_BPM), n // 2 - 1)
    if hi <= lo + 2:
        return 60.0 * FRAME_RATE / PRIOR_BPM
    lags = np.arange(lo, hi + 1)
    support = ac[lags] + 0.5 * ac[np.minimum(2 * lags, n - 1)]
    bpm = 60.0 * FRAME_RATE / lags
    prior = np.exp(-0.5 * (np.log2(bpm / PRIOR_BPM) / PRIOR_OCTAVES) ** 2)
    score = np.maximum(support, 0.0) * prior
    best = int(np.argmax(score))
    if 0 < best < len(lags) - 1:
        a, b, c = score[best - 1 : best + 2]
        shift = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) < 0 else 0.0
        return float(lags[best] + np.clip(shift, -0.5, 0.5))
    return float(lags[best])


def dp_beats(novelty: np.ndarray, period: float, tightness: float = TIGHTNESS) -> np.ndarray:
    """Frames of the beat sequence maximising novelty at beats minus tempo-deviation cost."""
    n = len(novelty)
    local = smooth(novelty, period / 32.0)
    score = local.copy()
    back = np.full(n, -1, dtype=np.int64)
    lo_off, hi_off = round(2 * period), max(1, round(period / 2))
    offsets = np.arange(hi_off, lo_off + 1)
    penalty = -tightness * np.log(offsets / period) ** 2
    for t in range(hi_off, n):
        prev = t - offsets
        ok = prev >= 0
        cand = score[prev[ok]] + penalty[ok]
        j = int(np.argmax(cand))
        if cand[j] > 0:
            score[t] += cand[j]
            back[t] = prev[ok][j]
    # End on the best-scoring frame within the last period, then follow the chain back.
    tail = max(0, n - round(period))
    t = tail + int(np.argmax(score[tail:]))
    beats = [t]
    while back[t] >= 0:
        t = int(back[t])
        beats.append(t)
    return np.asarray(beats[::-1], dtype=np.int64)


def steady(beats: np.ndarray, span: int = STEADY_BEATS) -> np.ndarray:
    """Beat times smoothed by a straight line through each beat's ``span`` neighbours.

    Single beats sit on the 10 ms frame grid and on whichever note happens to be there; players
    keep a steady pulse over a few beats, so a local linear fit places each beat (and the grid's
    phase at a clip's end, where a continuation joins) more precisely than any one onset.
    """
    beats = np.asarray(beats, np.float64)
    window = min(span, len(beats) - (1 - len(beats) % 2))  # odd, at most the beats there are
    if window < 3:
        return beats
    # A straight line fitted to a centred window passes through the window's mean at its
    # centre; the first and last half-windows take the line fitted to the whole edge window.
    half = window // 2
    out = np.convolve(beats, np.ones(window) / window, mode="same")
    index = np.arange(len(beats))
    for fit, ends in ((index[:window], index[:half]), (index[-window:], index[-half:])):
        slope, intercept = np.polyfit(fit, beats[fit], 1)
        out[ends] = slope * ends + intercept
    return out


def rise_time(loudness_db: np.ndarray, beat: int, reach: int) -> float | None:
    """Seconds the loudness takes from 10% to 90% of the attack at a beat frame, or None.

    The attack is the climb from the lowest point before the loudest frame within ``reach``
    after the beat (from 3 frames before it: the beat may sit a little late).
    """
    if beat - reach < 0 or beat + reach >= len(loudness_db):
        return None
    window = loudness_db[beat - reach : beat + reach + 1]
    peak = reach - 3 + int(np.argmax(window[reach - 3 :]))
    low = int(np.argmin(window[: peak + 1]))
    span = window[peak] - window[low]
    if span < RISE_DB:
        return None
    climb = (window[low : peak + 1] - window[low]) / span
    return float(np.argmax(climb >= 0.9) - np.argmax(climb >= 0.1)) / FRAME_RATE


def onset_lag(loudness_db: np.ndarray, frames: np.ndarray, period: float) -> float:
    """Seconds the novelty peaks trail the attacks, from the clip's attack time (see LAG_BASE_S)."""
    loud = np.maximum(np.asarray(loudness_db, np.float64), -80.0)
    reach = int(np.clip(period / 4, 8, 25))
    rises = [rise_time(loud, b, reach) for b in np.round(frames).astype(int)]
    rises = [r for r in rises if r is not None]
    if len(rises) < 5:
        return ONSET_LAG_S
    return float(min(LAG_BASE_S + LAG_PER_RISE * np.median(rises), MAX_LAG_S))


def _extend(beats: np.ndarray, period: float, n_frames: int) -> np.ndarray:
    """Beats continued at the tempo to both ends of the clip (rests at the edges have beats)."""
    before = np.arange(beats[0] - period, -period / 2, -period)[::-1]
    after = np.arange(beats[-1] + period, n_frames - period / 2, period)
    return np.concatenate([before, beats, after])


def _accents(
    features: FeatureFrame, notes: list[NoteEvent], beats: np.ndarray, standardise: bool = True
) -> np.ndarray:
    """(B,) how strong each beat sounds: note starts, long notes, harmonic change, loudness
    (each standardised over the beats, or in raw units, loudness in 20 dB steps)."""
    n = features.n_frames
    period = float(np.median(np.diff(beats))) if len(beats) > 1 else FRAME_RATE / 2
    reach = max(2, int(period / 6))
    start_at = np.zeros(n)
    length_at = np.zeros(n)
    for note in notes:
        start_at[note.start] = 1.0
        length_at[note.start] = min((note.end - note.start) / period, 4.0)
    chroma = np.asarray(features.chroma, np.float64)
    loud = np.maximum(np.asarray(features.loudness_db, np.float64), -80.0)
    rows = []
    for b in np.round(beats).astype(int):
        lo, hi = max(0, b - reach), min(n, b + reach + 1)
        if lo >= hi:
            rows.append([0.0, 0.0, 0.0, -80.0])
            continue
        w = max(2, int(period))
        before = chroma[:, max(0, b - w) : b].mean(axis=1) if b > 0 else np.zeros(12)
        after = chroma[:, b : min(n, b + w)].mean(axis=1) if b < n else np.zeros(12)
        denom = np.linalg.norm(before) * np.linalg.norm(after)
        change = 1.0 - float(before @ after / denom) if denom > 1e-9 else 0.0
        rows.append([start_at[lo:hi].max(), length_at[lo:hi].max(), change, loud[lo:hi].max()])
    table = np.asarray(rows)
    if standardise:
        table = (table - table.mean(axis=0)) / (table.std(axis=0) + 1e-9)
    else:
        table[:, 3] = table[:, 3] / 20.0
    return table @ np.array([1.0, 1.0, 0.5, 1.0])


def _strongest_phase(
    features: FeatureFrame,
    notes: list[NoteEvent],
    novelty: np.ndarray,
    frames: np.ndarray,
    subdivisions: int,
) -> np.ndarray:
    """The beats moved by the fraction of a beat whose positions sound strongest.

    In a busy line every subdivision has an onset, so the tempo path may lock onto the second
    eighth of each beat; beats proper carry the longer notes and the harmonic changes. A shift
    must keep SHIFT_NOVELTY of the path's onset novelty: where a band strikes every beat (a mix),
    the off-beats' melody notes must not pull the grid off the beat.
    """
    period = float(np.median(np.diff(frames)))
    smoothed = smooth(novelty, 1.0)

    def novelty_at(beats: np.ndarray) -> float:
        return float(smoothed[np.minimum(np.round(beats).astype(int), len(smoothed) - 1)].mean())

    floor = SHIFT_NOVELTY * novelty_at(frames)
    best, best_score = frames, -np.inf
    for k in range(subdivisions):
        moved = frames + k / subdivisions * period
        moved = moved[moved < features.n_frames]
        if k and novelty_at(moved) < floor:
            continue
        score = float(_accents(features, notes, moved, standardise=False).mean())
        if score > best_score + 1e-9:
            best, best_score = moved, score
    return best


def choose_meter(accents: np.ndarray) -> tuple[int, int]:
    """(beats per bar, index of the first downbeat) whose downbeats carry the most accent."""
    best = (-np.inf, METERS[0], 0)
    for rank, meter in enumerate(METERS):
        if len(accents) < 2 * meter:
            continue
        for phase in range(meter):
            strong = accents[phase::meter]
            weak = np.delete(accents, np.arange(phase, len(accents), meter))
            contrast = float(strong.mean() - weak.mean()) - METER_MARGIN * rank
            if contrast > best[0]:
                best = (contrast, meter, phase)
    return best[1], best[2]


def _subdivisions(novelty: np.ndarray, beats: np.ndarray) -> int:
    """3 when the notes between beats fall on thirds of the beat, else 2."""
    if len(beats) < 3:
        return 2

    smoothed = smooth(novelty, 1.0)

    def mean_at(fractions: tuple[float, ...]) -> float:
        points = [a + f * (b - a) for a, b in itertools.pairwise(beats)
                  for f in fractions]  # fmt: skip
        idx = np.clip(np.round(points).astype(int), 0, len(smoothed) - 1)
        return float(smoothed[idx].mean())

    thirds = mean_at((1 / 3, 2 / 3))
    # Slow lines (chorales) have little between beats: thirds must also be busy in absolute terms.
    return 3 if thirds > 1.5 * mean_at((0.5,)) and thirds > 0.35 * mean_at((0.0,)) else 2


def track_beats(features: FeatureFrame, notes: list[NoteEvent] | None = None) -> BeatGrid:
    """Tempo, beats, downbeats and meter of a clip from its features.

    Args:
        features: the clip's feature frame (the leader's melody, or a mix's predominant line).
        notes: the melody's notes if already segmented (see `leader_notes`).

    Returns:
        A BeatGrid; a clip too short or too sparse for a pulse gets a steady 100 bpm 4/4 grid.
    """
    n = features.n_frames
    notes = leader_notes(features) if notes is None else notes
    novelty = onset_novelty(features, notes)
    period = estimate_period(novelty)
    if n < 2 * period or len(notes) < 3:
        beats = np.arange(0.0, n, 60.0 * FRAME_RATE / PRIOR_BPM)
        return BeatGrid(beats / FRAME_RATE, beats[::4] / FRAME_RATE, 4, 2, PRIOR_BPM)
    frames = _extend(dp_beats(novelty, period).astype(np.float64), period, n)
    period = float(np.median(np.diff(frames)))
    subdivisions = _subdivisions(novelty, frames)
    frames = _strongest_phase(features, notes, novelty, frames, subdivisions)
    meter, phase = choose_meter(_accents(features, notes, frames))
    lag = onset_lag(features.loudness_db, frames, period)
    steadied = steady(frames)
    # The tempo from the steadied beats: the DP's whole-frame intervals would round it by up to
    # 0.5 frame a beat (~1% at 90 bpm), which a seam moved by a few beats turns into tens of ms.
    period = float(np.median(np.diff(steadied)))
    beats = steadied / FRAME_RATE - lag
    keep = beats >= -lag  # a beat the lag moved before the start stays, at 0
    phase = (phase - int(np.count_nonzero(~keep))) % meter
    beats = np.maximum(beats[keep], 0.0)
    return BeatGrid(
        beats=beats,
        downbeats=beats[phase::meter],
        beats_per_bar=meter,
        subdivisions=subdivisions,
        tempo_bpm=60.0 * FRAME_RATE / period,
    )


def f_measure(estimated: np.ndarray, reference: np.ndarray, tolerance: float = 0.07) -> float:
    """Beat F-measure: one-to-one matches within ±tolerance seconds (mir_eval's ±70 ms window;
    unlike mir_eval, beats in the first 5 s are kept, since inputs are short)."""
    est, ref = np.sort(np.asarray(estimated)), np.sort(np.asarray(reference))
    if len(est) == 0 or len(ref) == 0:
        return float(len(est) == len(ref))
    used = np.zeros(len(ref), bool)
    hits = 0
    for t in est:
        candidates = np.flatnonzero(~used & (np.abs(ref - t) <= tolerance))
        if len(candidates):
            used[candidates[np.argmin(np.abs(ref[candidates] - t))]] = True
            hits += 1
    precision, recall = hits / len(est), hits / len(ref)
    return 0.0 if hits == 0 else 2 * precision * recall / (precision + recall)
