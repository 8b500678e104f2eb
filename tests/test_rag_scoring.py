"""Pure score functions of the RAG ranker: known inputs, known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ensemble.errors import EnsembleError
from ensemble.rag import scoring
from ensemble.rag.chunks import seam_grid, seam_jitter
from ensemble.rag.seam import Pulse, after, plan_seam
from ensemble.rhythm import BeatGrid


def test_pitch_coherence_is_octave_tolerant_and_penalises_jumps() -> None:
    f0 = np.array([440.0, 880.0, 220.0, 440 * 2 ** (1 / 12), 440 * 2 ** (6 / 12), 0.0])
    unison, up, down, semitone, tritone, unvoiced = scoring.pitch_coherence(440.0, f0)
    assert unison == pytest.approx(1.0)
    assert up == pytest.approx(scoring.OCTAVE_PENALTY) and down == pytest.approx(up)
    assert unison > semitone > tritone
    assert semitone == pytest.approx(np.exp(-0.5 * (100 / scoring.PITCH_SIGMA_CENTS) ** 2))
    assert unvoiced == scoring.UNVOICED_PITCH_SCORE


def test_pitch_coherence_from_silence() -> None:
    scores = scoring.pitch_coherence(0.0, np.array([0.0, 330.0]))
    assert scores.tolist() == [1.0, scoring.UNVOICED_PITCH_SCORE]


def test_chroma_coherence_cosine_and_silence() -> None:
    c_major = np.zeros(12)
    c_major[[0, 4, 7]] = 1 / 3
    f_sharp = np.roll(c_major, 6)
    scores = scoring.chroma_coherence(c_major, np.stack([c_major, f_sharp, np.zeros(12)]))
    assert scores == pytest.approx([1.0, 0.0, 0.5])


def test_loudness_coherence_decays_with_the_jump() -> None:
    scores = scoring.loudness_coherence(-20.0, np.array([-20.0, -26.0, -14.0, -40.0]))
    assert scores[0] == 1.0
    assert scores[1] == pytest.approx(scores[2])
    assert scores[2] > scores[3]


def test_relevance_follows_the_best_scale() -> None:
    query = np.eye(4, 8)  # four orthogonal unit vectors, one per scale
    one_scale = np.stack([query[0], query[2], query[3], query[0]])  # matches only scale 0
    all_scales = query.copy()
    rel, per_scale = scoring.relevance(query, np.stack([one_scale, all_scales]))
    assert per_scale[0].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert rel[0] > 0.95  # adaptive: one matching scale dominates, not a plain mean (0.25)
    assert rel[1] == pytest.approx(1.0)


def test_composite_is_the_weighted_sum_and_coherence_the_weighted_mean() -> None:
    parts = {name: np.array([float(i + 1)]) for i, name in enumerate(scoring.PART_NAMES)}
    weights = {
        "relevance": 2.0,
        "pitch_coherence": 1.0,
        "chroma_coherence": 0.0,
        "loudness_coherence": 1.0,
        "rhythm_coherence": 1.0,
    }
    assert scoring.composite(parts, weights)[0] == pytest.approx(2 * 1 + 2 + 4 + 5)
    assert scoring.coherence(parts, weights)[0] == pytest.approx((2 + 4 + 5) / 3)


def test_rhythm_coherence_prefers_tempi_that_stretch_and_equal_meters() -> None:
    score = scoring.rhythm_coherence(120.0, 4, np.array([120.0, 115.0, 100.0, 120.0, 0.0, 120.0]),
                                     np.array([4, 4, 4, 3, 4, 2]))  # fmt: skip
    assert score[0] == pytest.approx(1.0) and 0.9 <= score[1] < 1.0  # within 8%: stretched
    assert score[2] < 0.05  # 17% slower: not stretched, scored by the difference
    assert score[3] == pytest.approx(0.5)  # three beats a bar against four
    assert score[4] == 0.5  # unknown tempo: neutral
    assert score[5] == pytest.approx(scoring.METER_NESTED)  # two beats a bar nest in four


def test_seam_lands_where_the_query_stands_in_its_bar() -> None:
    query = Pulse(120.0, 4, 2.75)  # stops a quarter beat before beat 3 (counting from 0)
    plan = plan_seam(10.0, Pulse(120.0, 4, 0.5), query, 60.0, 8.0)
    assert plan.shift_beats == pytest.approx(-1.75) and plan.start_s == pytest.approx(9.125)
    assert plan.rate == 1.0 and plan.phase_error_ms == 0.0
    # The earlier option would replay blocked material: the seam moves forward a bar instead.
    forward = plan_seam(10.0, Pulse(120.0, 4, 0.5), query, 60.0, 8.0, [(0.0, 10.0)])
    assert forward.shift_beats == pytest.approx(2.25) and forward.start_s >= 10.0
    # Different meters: only the place in the beat is matched; a close tempo is stretched.
    waltz = plan_seam(10.0, Pulse(115.0, 3, 1.1), query, 60.0, 8.0)
    assert waltz.shift_beats == pytest.approx(-0.35) and waltz.rate == pytest.approx(120 / 115)
    # Bars of two beats in a query of four: the seam lands on the query's place in a half bar.
    march = plan_seam(10.0, Pulse(120.0, 2, 0.5), query, 60.0, 8.0)
    assert march.shift_beats == pytest.approx(0.25) and march.start_s == pytest.approx(10.125)
    # Nowhere to move (the source ends): kept, with the offset reported.
    stuck = plan_seam(0.0, Pulse(120.0, 4, 0.5), query, 8.0, 8.0)
    assert stuck.start_s == 0.0 and stuck.phase_error_ms == pytest.approx(125.0)
    assert after(query, 1.0).bar_pos == pytest.approx(0.75)


def test_parse_weights_from_file_pairs_and_mapping(tmp_path) -> None:
    path = tmp_path / "weights.json"
    path.write_text(json.dumps({"weights": {"relevance": 0.5, "loudness_coherence": 0.3}}))
    from_file = scoring.parse_weights(path)
    assert from_file["relevance"] == 0.5 and from_file["loudness_coherence"] == 0.3
    assert from_file["pitch_coherence"] == scoring.DEFAULT_WEIGHTS["pitch_coherence"]
    assert scoring.parse_weights("relevance=2, chroma_coherence=0")["chroma_coherence"] == 0.0
    assert scoring.parse_weights(None) == scoring.DEFAULT_WEIGHTS


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("relevence=1", "Unknown score weight name"),
        ("relevance=loud", "must be a number"),
        ("relevance", "name=value pairs"),
        ("missing.json", "does not exist"),
    ],
)
def test_parse_weights_refuses_bad_input(spec: str, message: str) -> None:
    with pytest.raises(EnsembleError, match=message):
        scoring.parse_weights(spec)


def test_weights_file_without_weights_object(tmp_path) -> None:
    path = tmp_path / "w.json"
    path.write_text('{"relevance": 1}')
    with pytest.raises(EnsembleError, match='no "weights" object'):
        scoring.parse_weights(path)


def test_seam_grid_steadies_the_beats_and_keeps_the_bars() -> None:
    rng = np.random.default_rng(0)
    line = np.arange(40) * 0.5
    beats = line + rng.normal(0.0, 0.02, 40)
    grid = BeatGrid(beats, beats[1::4], 4, 2, 120.0)
    steadied = seam_grid(grid)
    assert np.abs(steadied.beats - line).mean() < 0.5 * np.abs(beats - line).mean()
    assert steadied.downbeats.tolist() == steadied.beats[1::4].tolist()


def test_seam_jitter_marks_where_the_beats_stray_from_a_steady_line() -> None:
    beats = np.arange(60) * 0.5
    beats[40:] += np.random.default_rng(0).normal(0.0, 0.05, 20)  # a loose last stretch
    jitter = seam_jitter(BeatGrid(beats, beats[::4], 4, 2, 120.0), np.array([5.0, 27.0]))
    assert jitter[0] < 0.01 < 0.05 < jitter[1]


def test_rhythm_coherence_trusts_steady_beats_more() -> None:
    score = scoring.rhythm_coherence(120.0, 4, np.full(2, 120.0), np.full(2, 4),
                                     np.array([0.0, 0.1]))  # fmt: skip
    assert score[0] == pytest.approx(1.0) and score[1] < 0.2


def test_seam_aligns_a_source_tracked_at_half_the_tempo_on_the_common_pulse() -> None:
    # The source's "beats" are half notes (60 bpm for a 120 bpm piece); the query stops a quarter
    # of its beat past a beat: the source moves to a quarter of a query beat past one of its beats.
    plan = plan_seam(10.0, Pulse(60.0, 4, 0.0), Pulse(120.0, 4, 1.25), 60.0, 4.0)
    assert plan.per_beat == 2.0 and plan.rate == pytest.approx(1.0)
    assert (plan.shift_beats * 2) % 1.0 == pytest.approx(0.25)
