"""Beats, meter, notes, key and chords of an input, and the metrical decoding of the followers:
synthetic lines with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from ensemble import rhythm
from ensemble.config import FRAME_RATE, SAMPLE_RATE
from ensemble.features import FeatureFrame, extract_features, midi_to_hz
from ensemble.groove import Context, decode_part, drum_hits, drum_pattern, slot_bounds
from ensemble.notes import NoteEvent, segment_notes
from ensemble.rhythm import (
    CHROMA_LAG,
    MAX_LAG_S,
    ONSET_LAG_S,
    BeatGrid,
    _strongest_phase,
    chroma_flux,
    f_measure,
    leader_notes,
    onset_lag,
    onset_novelty,
    polyphony,
    rise_time,
    track_beats,
)
from ensemble.tonality import Key, estimate_key, fit_chords, harmonic_segments

# C major tune, one note per beat at 120 bpm, 3/4, the downbeat note held twice as loud.
WALTZ = [60, 64, 67, 65, 64, 62, 60, 64, 67, 72, 71, 69, 67, 65, 64, 62, 64, 60] * 2


def melody(pitches: list[int], beat_s: float, accent_every: int = 0) -> np.ndarray:
    """A legato sawtooth-ish line: one note per beat, no gaps, accents on every nth note."""
    out = []
    for k, pitch in enumerate(pitches):
        n = int(beat_s * SAMPLE_RATE)
        t = np.arange(n) / SAMPLE_RATE
        f = midi_to_hz(pitch)
        tone = sum(np.sin(2 * np.pi * f * h * t) / h for h in range(1, 6))
        level = 0.5 if accent_every and k % accent_every == 0 else 0.2
        env = level * (0.6 + 0.4 * np.exp(-t / 0.15))  # legato: the note never stops
        out.append(tone * env)
    return np.concatenate(out).astype(np.float32) * 0.5


def test_f_measure_matches_one_to_one_within_the_window() -> None:
    ref = np.array([1.0, 2.0, 3.0])
    assert f_measure(ref + 0.05, ref) == 1.0
    assert f_measure(ref + 0.1, ref) == 0.0
    assert f_measure(np.array([1.0, 1.01]), np.array([1.0])) == pytest.approx(2 / 3)


def test_segment_notes_keeps_vibrato_inside_a_note_and_splits_repeats() -> None:
    t = np.arange(200)
    midi = np.where(t < 100, 69 + 0.3 * np.sin(t / 3), 72.0)  # A with vibrato, then C
    loud = np.full(200, -30.0)
    loud[150:] = -20.0  # C re-attacked at frame 150
    notes = segment_notes(midi, np.ones(200, bool), loud)
    assert [(n.pitch, n.start) for n in notes] == [(69, 0), (72, 100), (72, 150)]


def test_beats_and_meter_of_a_legato_waltz() -> None:
    audio = melody(WALTZ, 0.5, accent_every=3)
    grid = track_beats(extract_features(audio))
    truth = np.arange(len(WALTZ)) * 0.5
    assert abs(grid.tempo_bpm - 120) < 3
    assert f_measure(grid.beats, truth) > 0.9
    assert grid.beats_per_bar == 3 and grid.meter == "3/4"
    assert f_measure(grid.downbeats, truth[::3]) > 0.8


def test_key_and_chords_of_a_plain_tune() -> None:
    audio = melody(WALTZ, 0.5, accent_every=3)
    features = extract_features(audio)
    grid = track_beats(features)
    notes = segment_notes(
        12 * np.log2(np.maximum(features.f0_hz, 1) / 440) + 69, features.voiced,
        features.loudness_db,
    )  # fmt: skip
    key = estimate_key(notes, features.chroma)
    assert key == Key(0, "major") and key.name == "C major"
    bounds = harmonic_segments(grid.downbeats * FRAME_RATE, grid.beats_per_bar, features.n_frames)
    chords = fit_chords(notes, key, bounds)
    assert chords[0].root == 0 and all(c.pitch_classes[0] == c.root for c in chords)
    assert len({c.root for c in chords}) >= 2  # the harmony moves


def _grid(beats_per_bar: int = 4, n_beats: int = 16, bpm: float = 120.0) -> BeatGrid:
    beats = np.arange(n_beats) * 60.0 / bpm
    return BeatGrid(beats, beats[::beats_per_bar], beats_per_bar, 2, bpm)


def test_frame_positions_count_beats_within_bars() -> None:
    phase, position = _grid(3).frame_positions(200)
    assert phase[0] == 0 and phase[25] == pytest.approx(0.5)
    assert position[50] == pytest.approx(1.0) and position[150] == pytest.approx(0.0)


def test_followers_change_notes_only_on_the_grid_in_key_with_the_chords() -> None:
    grid = _grid()
    n = 400  # 4 s, 8 beats at 50 frames
    key = Key(0, "major")
    bounds = harmonic_segments(grid.downbeats * FRAME_RATE, 4, n)
    # A melody outlining C (bar 1) then G (bar 2).
    notes = [NoteEvent(0, 100, 64, -20), NoteEvent(100, 200, 67, -20),
             NoteEvent(200, 300, 62, -20), NoteEvent(300, 400, 71, -20)]  # fmt: skip
    chords = fit_chords(notes, key, bounds)
    assert [c.root for c in chords] == [0, 7]
    context = Context(grid, key, chords)
    # A conductor that wants F#2 (out of key) with a flat spread elsewhere in the bass register.
    prob = np.full((n, 128), 1e-4)
    prob[:, 36:52] = 0.02
    prob[:, 42] = 0.3
    prob /= prob.sum(axis=1, keepdims=True)
    bass = decode_part(prob, np.full(n, 0.95), context, "bass")
    slot_starts, _ = slot_bounds(grid, n, 1)
    changes = np.flatnonzero(np.diff(bass)) + 1
    assert set(changes.tolist()) <= set(slot_starts.tolist())
    assert np.all(bass >= 0) and np.isin(bass % 12, sorted(key.scale)).all()
    assert bass[0] % 12 == 0 and bass[200] % 12 == 7  # roots where the chords start
    assert len(changes) >= 4  # it walks


def test_drum_pattern_follows_the_meter_with_fills() -> None:
    grid = _grid(4, 32)  # 8 bars of 4/4
    n = 32 * 50
    hits = dict(drum_hits(grid, n))
    downbeats = (grid.downbeats * FRAME_RATE).round().astype(int)
    assert all(hits[d] >= 0.0 for d in downbeats)  # kick (or crash) on every bar line
    assert hits[downbeats[4]] > hits[downbeats[1]]  # crash after the first fill
    fill_beat = round(grid.beats[15] * FRAME_RATE)  # last beat of bar 4
    assert sum(fill_beat <= f < fill_beat + 50 for f in hits) == 4
    plain_beat = round(grid.beats[3] * FRAME_RATE)
    assert sum(plain_beat <= f < plain_beat + 50 for f in hits) == 2
    loud = np.full(n, -30.0)
    loud[: n // 2] = -90.0  # the conductor rests the drums in the first half
    env, onsets = drum_pattern(grid, loud)
    assert len(onsets) and onsets.min() >= n // 2 - FRAME_RATE
    assert env.shape == (n,) and env[onsets].min() > env.min() + 20


def test_a_silent_clip_still_has_a_grid() -> None:
    n = 300
    frame = FeatureFrame(np.zeros(n), np.zeros(n), np.full(n, -100.0), np.zeros(n),
                         np.zeros((12, n)))  # fmt: skip
    grid = track_beats(frame)
    assert grid.tempo_bpm > 0 and len(grid.beats) >= 4 and grid.meter == "4/4"


def test_steady_is_a_local_straight_line_fit() -> None:
    from scipy.signal import savgol_filter

    from ensemble.rhythm import steady

    rng = np.random.default_rng(0)
    for n in (3, 4, 9, 10, 30):
        beats = np.cumsum(0.5 + 0.02 * rng.standard_normal(n))
        window = min(9, n - (1 - n % 2))
        np.testing.assert_allclose(steady(beats), savgol_filter(beats, window, 1, mode="interp"))
    assert steady(np.array([1.0, 2.0])).tolist() == [1.0, 2.0]


def _attacks(rise_frames: int, n_beats: int = 12, period: int = 50) -> np.ndarray:
    """Loudness (dB) of notes struck every ``period`` frames, each climbing 20 dB over
    ``rise_frames`` frames from its beat, then decaying."""
    loud = np.full(n_beats * period, -50.0)
    for b in range(period, len(loud) - period, period):
        climb = np.linspace(-50.0, -30.0, rise_frames + 1)
        loud[b : b + rise_frames + 1] = climb
        loud[b + rise_frames + 1 : b + period] = np.linspace(-30.0, -50.0, period - rise_frames - 1)
    return loud


def test_onset_lag_grows_with_the_attack_time() -> None:
    frames = np.arange(50, 550, 50, dtype=np.float64)
    plucked, bowed = (onset_lag(_attacks(r), frames, 50.0) for r in (2, 15))
    assert plucked < ONSET_LAG_S < bowed <= MAX_LAG_S
    assert rise_time(_attacks(15), 100, 25) == pytest.approx(0.12, abs=0.011)
    flat = np.full(600, -40.0)  # no attack to time: the constant lag
    assert onset_lag(flat, frames, 50.0) == ONSET_LAG_S


def test_off_beat_melody_notes_do_not_pull_the_grid_off_a_band_that_marks_the_beat() -> None:
    # The melody's notes start half a beat after each beat, so note starts and long notes
    # favour the off-beats as accents; the shift is taken only where the off-beats also carry
    # a fair share of the onset novelty (not where a band strikes every beat).
    n, period = 1200, 50
    loud = np.full(n, -40.0)
    midi = np.zeros(n)
    for b in range(0, n, period):
        midi[b + period // 2 : b + period] = 60 + (b // period) % 5
    f0 = np.where(midi > 0, midi_to_hz(np.maximum(midi, 1.0)), 0.0)
    feats = FeatureFrame(f0, (midi > 0).astype(float), loud, 10 ** (loud / 20), np.ones((12, n)))
    notes = leader_notes(feats)
    frames = np.arange(0, n, period, dtype=np.float64)
    for off_beat_share, shifted in ((0.2, False), (0.8, True)):
        novelty = np.zeros(n)
        novelty[::period] = 1.0
        novelty[period // 2 :: period] = off_beat_share
        moved = _strongest_phase(feats, notes, novelty, frames, 2)
        assert (moved[0] == period // 2) == shifted


def chorale(beats: int, beat_s: float) -> np.ndarray:
    """Legato four-part chords at one level, a new chord each beat while the top voice holds
    each of its notes for two beats: only the harmony marks every beat. Each voice glides into
    its next note with a continuous phase, so no join dips or rises in loudness."""
    chords = [(48, 55, 64), (53, 57, 65), (50, 57, 65), (55, 59, 62)]  # C, F, Dm, G (low voices)
    n = int(beat_s * SAMPLE_RATE)
    voices = np.array([(*chords[k % 4], 72 if (k // 2) % 2 == 0 else 74) for k in range(beats)])
    hz = np.repeat(midi_to_hz(voices.astype(float)), n, axis=0)  # (samples, 4)
    phase = 2 * np.pi * np.cumsum(hz, axis=0) / SAMPLE_RATE
    return (0.1 * np.sin(phase).sum(axis=1)).astype(np.float32)


def test_polyphony_tells_chords_from_a_lone_line() -> None:
    assert polyphony(extract_features(melody(WALTZ, 0.5))) == 0.0
    assert polyphony(extract_features(chorale(24, 0.6))) > 0.5


def test_chord_changes_join_the_novelty_of_chords_only(monkeypatch: pytest.MonkeyPatch) -> None:
    beat_s = 0.6
    chords = extract_features(chorale(16, beat_s))
    flux = chroma_flux(chords)
    changes = (np.arange(1, 16) * beat_s * FRAME_RATE).astype(int)
    near = np.zeros(len(flux), bool)
    for frame in changes:
        near[frame : frame + 2 * CHROMA_LAG + 3] = True  # the flux trails a change by its lag
    assert flux[near].mean() > 5 * flux[~near].mean()
    line = extract_features(melody(WALTZ, 0.5))
    with_chords = onset_novelty(chords), onset_novelty(line)
    monkeypatch.setattr(rhythm, "CHROMA_WEIGHT", 0.0)
    assert np.array_equal(onset_novelty(line), with_chords[1])  # a lone line: note starts only
    at_changes = np.array([with_chords[0][f : f + 6].max() for f in changes])
    before = np.array([onset_novelty(chords)[f : f + 6].max() for f in changes])
    assert np.median(at_changes - before) > 1.0
