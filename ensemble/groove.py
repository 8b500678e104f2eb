"""Metrical decoding: the conductor's predictions played on the beat grid, in key, with chords.

The conductor network predicts, per 10 ms frame, a distribution over notes and a voicing
probability for each follower. Decoded frame by frame (`accompaniment.viterbi_notes`) those parts
drift off the beat, change notes rarely and stray out of key. Here they are decoded on the
metrical grid instead:

- a follower changes note only at grid slots (beats; subdivisions for harmony instruments), and
  a change costs least on a bar line, more on a beat, most between beats;
- each slot's note is scored by the conductor's probability (its register, contour and
  rests), plus a bonus for tones of the current chord, plus a penalty outside the key; the
  bass also gets a bonus for the chord root where a chord starts, so it moves with the harmony
  (roots on strong beats, chord tones and passing notes between);
- a leap costs in proportion to its size (voice leading).

Drums follow a pattern for the meter (kick on strong beats, snare on back beats, cymbal on the
subdivisions, a fill in the last beat of every fourth bar and a crash after it) at the level
and with the rests the conductor predicts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ensemble.config import FRAME_RATE
from ensemble.filters import moving_average
from ensemble.rhythm import BeatGrid
from ensemble.tonality import Chord, Key, chord_frames, chord_name

N_NOTES = 128
REST = N_NOTES  # state index of a rest
LOGP_FLOOR = -12.0  # nats below the slot's best note: further is as unlikely as it gets
CHORD_TONE_BONUS = 2.0
ROOT_BONUS = 2.5  # bass, on the slot where a chord starts
OUT_OF_KEY_PENALTY = 6.0
LEAP_COST = 0.15  # per semitone of a note change
CONDUCTOR_WEIGHT = 0.25  # the network's log-probabilities are peaky; scaled so harmony counts
# Cost of a change (or a rest/note switch) by slot strength: subdivision, beat, bar line.
CHANGE_COST = {"bass": (3.0, 0.4, 0.2), "harmony": (2.0, 0.8, 0.3)}
# Cost of holding a note across a slot boundary: parts that move, as players' do.
HOLD_COST = {"bass": (0.0, 3.0, 4.5), "harmony": (0.0, 2.0, 3.0)}
PHRASE_BARS = 4  # a fill ends every fourth bar
DRUM_DECAY_DB_PER_S = 60.0
DRUM_QUIET_DB = -60.0  # where the conductor's drum loudness stays under this, the drums rest


@dataclass
class Context:
    """What the followers play to: the beat grid, the key and the chords (frames)."""

    grid: BeatGrid
    key: Key
    chords: list[Chord]

    def to_json(self) -> dict:
        """Key and chord changes (seconds, chord names) for metrics.json."""
        return {
            "key": self.key.name,
            "chords": [
                {"start_s": round(c.start / FRAME_RATE, 3), "chord": chord_name(c)}
                for c in self.chords
            ],
        }


def slot_bounds(grid: BeatGrid, n_frames: int, per_beat: int) -> tuple[np.ndarray, np.ndarray]:
    """Grid slots of a clip.

    Returns:
        bounds: (S+1,) slot boundaries in frames, from 0 to n_frames.
        strength: (S,) 0 between beats, 1 on a beat, 2 on a bar line.
    """
    beats = grid.beats * FRAME_RATE
    index = grid.beat_index
    points: dict[int, int] = {}
    for k, (t, pos) in enumerate(zip(beats, index, strict=True)):
        nxt = beats[k + 1] if k + 1 < len(beats) else t + 60.0 * FRAME_RATE / grid.tempo_bpm
        for j in range(per_beat):
            frame = round(t + j * (nxt - t) / per_beat)
            if 0 <= frame < n_frames:
                strength = 0 if j else (2 if pos == 0 else 1)
                points[frame] = max(points.get(frame, 0), strength)
    points.setdefault(0, 1)
    starts = sorted(points)
    return np.asarray([*starts, n_frames]), np.asarray([points[s] for s in starts])


def slot_emissions(
    pitch_prob: np.ndarray, voiced_p: np.ndarray, bounds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(S, 128) mean log-probability of each note per slot relative to the slot's best (floored),
    and (S,) mean voicing probability."""
    logp = np.log(np.asarray(pitch_prob, np.float64) + 1e-8)
    sums = np.add.reduceat(logp, bounds[:-1], axis=0)
    lengths = np.diff(bounds)[:, None]
    mean = sums / lengths
    mean = np.maximum(mean - mean.max(axis=1, keepdims=True), LOGP_FLOOR)
    voiced = np.add.reduceat(np.asarray(voiced_p, np.float64), bounds[:-1]) / lengths[:, 0]
    return mean, voiced


def harmony_scores(
    bounds: np.ndarray, strength: np.ndarray, context: Context, n_frames: int, role: str
) -> np.ndarray:
    """(S, 128) bonus of each note per slot: chord tones up, out-of-key notes down, the root up
    for the bass where a chord starts."""
    roots, tones = chord_frames(context.chords, n_frames)
    starts = bounds[:-1]
    pcs = np.arange(N_NOTES) % 12
    in_key = np.isin(pcs, sorted(context.key.scale))
    score = np.where(in_key, 0.0, -OUT_OF_KEY_PENALTY)[None].repeat(len(starts), 0)
    score += CHORD_TONE_BONUS * tones[starts][:, pcs]
    if role == "bass":
        chord_starts = {c.start for c in context.chords}
        for s, frame in enumerate(starts.tolist()):
            if frame in chord_starts or strength[s] == 2:
                score[s, pcs == roots[frame]] += ROOT_BONUS
    return score


def viterbi_slots(emit: np.ndarray, change_cost: np.ndarray, hold_cost: np.ndarray) -> np.ndarray:
    """Best state per slot.

    Args:
        emit: (S, 129) scores of notes 0..127 and the rest (state 128).
        change_cost: (S,) cost of changing state at each slot; a note change adds LEAP_COST per
            semitone.
        hold_cost: (S,) cost of holding a note (not a rest) into each slot.

    Returns:
        (S,) state indices.
    """
    n_slots, n_states = emit.shape
    notes = np.arange(N_NOTES)
    leap = LEAP_COST * np.abs(notes[:, None] - notes[None, :]).astype(np.float64)
    leap = np.pad(leap, ((0, 1), (0, 1)))  # rests: no leap cost
    diagonal = np.eye(n_states, dtype=bool)
    held = np.ones(n_states)
    held[REST] = 0.0
    score = emit[0].copy()
    back = np.zeros((n_slots, n_states), dtype=np.int64)
    for s in range(1, n_slots):
        stay = np.diag(-hold_cost[s] * held)
        trans = np.where(diagonal, stay, -(change_cost[s] + leap))  # (from, to)
        total = score[:, None] + trans
        back[s] = total.argmax(axis=0)
        score = total.max(axis=0) + emit[s]
    path = np.empty(n_slots, dtype=np.int64)
    path[-1] = int(score.argmax())
    for s in range(n_slots - 1, 0, -1):
        path[s - 1] = back[s, path[s]]
    return path


def decode_part(
    pitch_prob: np.ndarray, voiced_p: np.ndarray, context: Context, role: str
) -> np.ndarray:
    """A pitched follower's notes on the grid.

    Args:
        pitch_prob: (T, 128) the conductor's note probabilities for this follower.
        voiced_p: (T,) its voicing probability.
        context: grid, key and chords.
        role: "bass" (moves on beats, roots where chords start) or "harmony" (beats and their
            subdivisions, chord tones).

    Returns:
        (T,) MIDI note per frame, -1 for rests.
    """
    n = len(voiced_p)
    per_beat = 1 if role == "bass" else context.grid.subdivisions
    bounds, strength = slot_bounds(context.grid, n, per_beat)
    logp, voiced = slot_emissions(pitch_prob, voiced_p, bounds)
    harmony = harmony_scores(bounds, strength, context, n, role)
    notes = CONDUCTOR_WEIGHT * logp + harmony + np.log(voiced + 1e-6)[:, None]
    emit = np.concatenate([notes, np.log(1.0 - voiced + 1e-6)[:, None]], axis=1)
    change = np.asarray(CHANGE_COST[role])[strength]
    states = viterbi_slots(emit, change, np.asarray(HOLD_COST[role])[strength])
    per_frame = np.repeat(states, np.diff(bounds))
    return np.where(per_frame == REST, -1, per_frame)


def drum_hits(grid: BeatGrid, n_frames: int) -> list[tuple[int, float]]:
    """(frame, level in dB relative to the groove's peak) of every drum hit of the pattern."""
    sub = grid.subdivisions
    beats = grid.beats * FRAME_RATE
    period = 60.0 * FRAME_RATE / grid.tempo_bpm
    meter = grid.beats_per_bar
    bar = -1
    hits: dict[int, float] = {}
    for k, (t, pos) in enumerate(zip(beats, grid.beat_index, strict=True)):
        bar += pos == 0
        nxt = beats[k + 1] if k + 1 < len(beats) else t + period
        fill = bar % PHRASE_BARS == PHRASE_BARS - 1 and pos == meter - 1
        steps = 4 if fill and sub == 2 else sub
        for j in range(steps):
            frame = round(t + j * (nxt - t) / steps)
            if fill:
                level = -4.0 + 1.0 * j  # a crescendo into the next bar
            elif j:
                level = -10.0  # cymbal on the subdivisions
            elif pos == 0:
                level = 3.0 if bar % PHRASE_BARS == 0 and bar > 0 else 0.0  # kick; crash after fill
            elif meter == 3:
                level = -6.0  # waltz: light back beats
            else:
                level = -1.0 if pos % 2 else -3.0  # snare on the back beats, kick mid-bar
            if 0 <= frame < n_frames:
                hits[frame] = max(hits.get(frame, -np.inf), level)
    return sorted(hits.items())


def drum_pattern(grid: BeatGrid, loudness_db: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The drums' loudness curve from the pattern, at the conductor's level.

    Args:
        grid: beats and meter.
        loudness_db: (T,) the conductor's predicted drum loudness (its dynamics and rests).

    Returns:
        (loudness (T,) dB, onset frames (H,)).
    """
    loud = np.asarray(loudness_db, np.float64)
    n = len(loud)
    level = moving_average(loud, FRAME_RATE)  # dynamics over ~1 s
    peak = float(np.percentile(loud, 95))
    floor = float(loud.min())
    out = np.full(n, floor)
    onsets = []
    t = np.arange(n)
    for frame, offset in drum_hits(grid, n):
        if level[frame] < DRUM_QUIET_DB:
            continue
        amplitude = peak + offset + 0.5 * (level[frame] - level.max())
        decay = amplitude - DRUM_DECAY_DB_PER_S * (t[frame:] - frame) / FRAME_RATE
        out[frame:] = np.maximum(out[frame:], decay)
        onsets.append(frame)
    return out.astype(np.float32), np.asarray(onsets, dtype=np.int64)
