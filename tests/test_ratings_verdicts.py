"""Richer judgements: tie / all bad / skip and a reason, flags, the schema migration that keeps
old rows, Davidson fitting with bootstrap intervals, and what `ratings fit`/`stats` report."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from ensemble.cli import main
from ensemble.errors import EnsembleError
from ensemble.ratings import RatingsStore, fit_weights, read_export
from ensemble.ratings.fit import human_utility, pairwise_outcomes
from ensemble.ratings.schema import MIGRATIONS
from ensemble.ratings.synthetic import synthetic_judgements
from tests.test_ratings import judgement

# The simulated listener's true weights have the same total as the ranker's, so the saved
# (rescaled) weights estimate them directly.
TRUE = {
    "relevance": 0.2,
    "pitch_coherence": 0.9,
    "chroma_coherence": 0.1,
    "loudness_coherence": 0.3,
}
RANKER = {
    "relevance": 0.5,
    "pitch_coherence": 0.5,
    "chroma_coherence": 0.25,
    "loudness_coherence": 0.25,
}


def test_tie_all_bad_skip_and_reason_are_stored(tmp_path: Path) -> None:
    store = RatingsStore(tmp_path / "r.db")
    tie = judgement(k=3, verdict="tie", ranking=[2, 0, 1], ties=[[0, 1]], reason="A and B alike")
    skip = judgement(verdict="skip", ranking=None, uid="skip-1")
    bad = judgement(verdict="all_bad", ranking=None, uid="bad-1", flags=["overlap"])
    for j in (tie, skip, bad):
        store.add_judgement(j)
    back = {j.uid: j for j in store.judgements()}
    assert back[tie.uid].ties == [[0, 1]] and back[tie.uid].reason == "A and B alike"
    assert back["skip-1"].verdict == "skip" and back["skip-1"].ranking is None
    assert back["bad-1"].flags == ["overlap"]
    assert pairwise_outcomes(back[tie.uid]) == [(2, 0, 1.0), (2, 1, 1.0), (0, 1, 0.5)]
    assert list(human_utility(back[tie.uid])) == [2.0, 2.0, 3.0]
    assert pairwise_outcomes(back["skip-1"]) == []
    for fmt in ("csv", "jsonl"):
        store.export(fmt, tmp_path / f"all.{fmt}")
        again = {j.uid: j for j in read_export(tmp_path / f"all.{fmt}")}
        assert again[tie.uid].ties == [[0, 1]] and again["bad-1"].flags == ["overlap"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"verdict": "meh"}, "verdict must be one of"),
        ({"verdict": "tie"}, "tie verdict needs the tied groups"),
        ({"ties": [[0, 1]]}, "only a tie verdict"),
        ({"verdict": "tie", "ties": [[0]]}, "two or more distinct"),
        ({"verdict": "skip"}, "skipped round carries no ranking"),
        ({"reason": "x" * 2001}, "at most 2000 characters"),
        ({"flags": ["sleepy"]}, "Flags must be"),
    ],
)
def test_bad_verdicts_are_refused(tmp_path: Path, overrides: dict, message: str) -> None:
    with pytest.raises(EnsembleError, match=message):
        RatingsStore(tmp_path / "r.db").add_judgement(judgement(**overrides))


def test_migration_keeps_rows_written_by_schema_1(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (1)")
    conn.execute(
        "INSERT INTO judgements (uid, created_at, session_id, input_fingerprint, candidates, "
        "shown_order, listen_seconds, ranking, instruments, settings, model_version, "
        "index_version, app_version) VALUES ('old', '2026-11-01T00:00:00', 's', ?, ?, '[0, 1]', "
        "'[3.0, 3.0]', '[1, 0]', '[\"violin\"]', '{}', 'm', 'i', 'a')",
        (
            "0" * 64,
            '[{"chunk_id": "c0", "source": "s", "start_s": 0.0, "scores": {"relevance": '
            '0.5}, "rank": 1}, {"chunk_id": "c1", "source": "s", "start_s": 1.0, "scores": '
            '{"relevance": 0.4}, "rank": 2}]',
        ),
    )
    conn.commit()
    conn.close()
    store = RatingsStore(db, create=False)
    (old,) = store.judgements()
    assert (old.uid, old.ranking, old.verdict, old.flags, old.ties, old.reason) == (
        "old",
        [1, 0],
        "ranking",
        [],
        None,
        "",
    )
    store.add_judgement(judgement(verdict="tie", ties=[[0, 2]], ranking=[0, 2, 1]))
    assert store.count() == 2


def test_fit_with_ties_prints_intervals_covering_the_true_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "r.db"
    store = RatingsStore(db)
    simulated = synthetic_judgements(300, TRUE, RANKER, noise=0.1, tie_margin=0.05, seed=4)
    assert sum(j.verdict == "tie" for j in simulated) > 100  # ties are common, not a corner
    for j in simulated:
        store.add_judgement(j)
    out = tmp_path / "w.json"
    assert main(["ratings", "fit", "--db", str(db), "--out", str(out), "--seed", "2"]) == 0
    report = capsys.readouterr().out
    assert "fitted on 300 judgements" in report and "tie strength (Davidson" in report
    for part, true in TRUE.items():
        found = re.search(rf"^{part}\s+\S+\s+(\S+)\s+\[(\S+), (\S+)\]$", report, re.M)
        assert found, report
        low, high = float(found.group(2)), float(found.group(3))
        assert low <= true <= high, (part, true, low, high)
        assert high - low < 0.1  # 300 listeners pin each weight down
    assert out.is_file()


def test_flagged_judgements_are_left_out_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    honest = synthetic_judgements(40, TRUE, RANKER, seed=5)
    # Gamed rounds ranked the opposite way: if they were fitted, the weights would flip.
    gamed = synthetic_judgements(40, {k: -v for k, v in TRUE.items()}, RANKER, seed=6)
    for n, j in enumerate(gamed):
        j.flags = [("not_fetched", "overlap", "too_fast", "heard_before")[n % 4]]
    result = fit_weights(honest + gamed, seed=0, resamples=50)
    assert result.fitted_on == 40 and result.excluded["not_fetched"] == 10
    assert result.weights["pitch_coherence"] > 0.5
    assert fit_weights(honest + gamed, seed=0, include_flagged=True, resamples=10).fitted_on == 80

    db = tmp_path / "r.db"
    store = RatingsStore(db)
    for j in honest[:20] + gamed:
        store.add_judgement(j)
    store.add_judgement(judgement(verdict="skip", ranking=None, uid="s"))
    out = tmp_path / "w.json"
    assert main(["ratings", "fit", "--db", str(db), "--out", str(out), "--resamples", "20"]) == 0
    report = capsys.readouterr().out
    assert "left out as flagged: 10 not fetched, 10 overlap, 10 too fast, 10 heard before" in report
    assert "not applied: 20 judgements fitted, the minimum is 30" in report
    assert not out.exists()  # the app keeps its weights until enough listeners agree
    assert main(["ratings", "stats", "--db", str(db)]) == 0
    stats = capsys.readouterr().out
    assert "flagged        40" in stats
    assert "gate failed  20 (audio not fetched 10, candidates overlapping 10)" in stats
    assert "heard before 10" in stats and "too fast     10" in stats
    assert "1 skip" in stats
