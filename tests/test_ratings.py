"""Ratings: storage, validation, export, durability, the Hub mirror, weight fitting and the CLI."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import HfApi
from huggingface_hub.hf_api import CommitInfo, RepoUrl

from ensemble.audio import fingerprint
from ensemble.cli import main
from ensemble.errors import EnsembleError
from ensemble.ratings import (
    Candidate,
    HubSync,
    Judgement,
    RatingsStore,
    disagreements,
    fit_weights,
    load_weights,
    read_export,
    save_weights,
)
from ensemble.ratings.fit import kendall_tau, pairwise_outcomes, with_keeps
from ensemble.ratings.synthetic import synthetic_judgements

REPO = Path(__file__).resolve().parents[1]
TRUE = {
    "relevance": 0.2,
    "pitch_coherence": 1.0,
    "loudness_coherence": 0.6,
    "chroma_coherence": 0.0,
}
WRONG = {
    "relevance": 0.7,
    "pitch_coherence": 0.1,
    "loudness_coherence": 0.1,
    "chroma_coherence": 0.1,
}


def judgement(k: int = 3, **overrides: object) -> Judgement:
    cands = [
        Candidate(
            chunk_id=f"c{i}",
            source="Track00001/mix.flac",
            start_s=2.5 * i,
            scores={"relevance": 0.9 - 0.1 * i, "coherence": 0.5 + 0.1 * i, "composite": 0.7},
            rank=i + 1,
        )
        for i in range(k)
    ]
    fields: dict[str, object] = dict(
        session_id="s1",
        input_fingerprint=fingerprint(np.zeros(16)),
        candidates=cands,
        shown_order=list(reversed(range(k))),
        listen_seconds=[4.0] * k,
        ranking=list(reversed(range(k))),
        instruments=["violin"],
        settings={"top_k": k, "hops": 1, "weights": {"relevance": 0.5, "coherence": 0.5}},
        model_version="m1",
        index_version="i1",
        app_version="0.1.0",
    )
    fields.update(overrides)
    return Judgement(**fields)


# -- store ---------------------------------------------------------------------------------------


def test_store_round_trip_wal_and_resubmit(tmp_path: Path) -> None:
    store = RatingsStore(tmp_path / "r.db")
    assert store.sqlite_settings() == {
        "journal_mode": "wal",
        "synchronous": "FULL",
        "busy_timeout_ms": 30000,
    }
    j = judgement()
    first = store.add_judgement(j)
    assert store.add_judgement(j) == first  # same uid (a double submit) is stored once
    store.add_judgement(judgement(ranking=None, ratings=[5, 2, 2], best=0))
    stored = store.judgements()
    assert store.count() == 2 and stored[0] == j
    assert stored[0].created_at.endswith("+00:00")
    assert [x.id for x in store.judgements(session_id="s1")] == [1, 2]
    assert store.judgements(session_id="nobody") == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"ranking": [0, 0, 2]}, "ranking must list each"),
        ({"ranking": None, "ratings": [1, 6, 3]}, "whole numbers from 1 to 5"),
        ({"ranking": None, "ratings": [5, 5.0, 3]}, "whole numbers from 1 to 5"),
        ({"best": 0}, "not first in the ranking"),
        ({"ranking": None}, "nothing to store"),
        ({"listen_seconds": [1.0]}, "Listen times"),
        ({"shown_order": [0, 1]}, "shown order"),
        ({"input_fingerprint": "abc"}, "sha256"),
        ({"settings": {"x": object()}}, "cannot be stored as JSON"),
    ],
)
def test_invalid_judgement_rejected(tmp_path: Path, overrides: dict, message: str) -> None:
    store = RatingsStore(tmp_path / "r.db")
    with pytest.raises(EnsembleError, match=message):
        store.add_judgement(judgement(**overrides))
    assert store.count() == 0


def test_bad_database_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(EnsembleError, match="no ratings database"):
        RatingsStore(tmp_path / "missing.db", create=False)
    (tmp_path / "junk.db").write_text("not a database " * 100)
    with pytest.raises(EnsembleError, match="cannot be opened"):
        RatingsStore(tmp_path / "junk.db")
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(EnsembleError, match="not an Ensemble ratings database"):
        RatingsStore(tmp_path / "other.db", create=False)
    with sqlite3.connect(tmp_path / "other.db") as conn:  # left untouched
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    RatingsStore(tmp_path / "new.db")
    with sqlite3.connect(tmp_path / "new.db") as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(EnsembleError, match="newer Ensemble"):
        RatingsStore(tmp_path / "new.db")


def test_listen_events(tmp_path: Path) -> None:
    store = RatingsStore(tmp_path / "r.db")
    store.add_listen_event("s1", "c0", 2.0, input_fingerprint="a")
    store.add_listen_event("s1", "c0", 1.5, input_fingerprint="a")
    store.add_listen_event("s1", "c1", 3.0, input_fingerprint="b")
    assert store.listened_seconds("s1") == {"c0": 3.5, "c1": 3.0}
    assert store.listened_seconds("s1", input_fingerprint="b") == {"c1": 3.0}
    with pytest.raises(EnsembleError, match="non-negative"):
        store.add_listen_event("s1", "c0", -1)
    assert store.stats()["listen_events"] == 3


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_round_trips(tmp_path: Path, fmt: str) -> None:
    store = RatingsStore(tmp_path / "r.db")
    mixed = judgement(k=4)
    mixed.candidates[2].scores["pitch_cents"] = -12.25  # parts may differ between candidates
    for j in [
        mixed,
        judgement(ranking=None, ratings=[4, 4, 1], best=1),
        judgement(ranking=None, best=2, session_id="s2"),
    ]:
        store.add_judgement(j)
    out = tmp_path / f"ratings.{fmt}"
    assert store.export(fmt, out) == 3
    assert read_export(out) == store.judgements()


def test_fingerprint_is_of_samples_not_dtype() -> None:
    x = np.linspace(-1, 1, 100)
    assert fingerprint(x) == fingerprint(x.astype(np.float32))
    assert fingerprint(x) != fingerprint(x[::-1])


def test_rating_survives_sigkill_right_after_submit(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    child = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        from ensemble.ratings import RatingsStore
        from ensemble.ratings.synthetic import synthetic_judgements
        store = RatingsStore({str(db)!r})
        for j in synthetic_judgements(5, {TRUE!r}, {WRONG!r}):
            store.add_judgement(j)
        os.kill(os.getpid(), signal.SIGKILL)  # no close, no atexit, no flush
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert RatingsStore(db, create=False).count() == 5


# -- Hub mirror ----------------------------------------------------------------------------------


class LocalHub(HfApi):
    """The Hub's side of the wire, kept in a local folder: CommitScheduler itself runs unchanged,
    only create_repo/create_commit answer locally instead of over HTTP."""

    def __init__(self, root: Path):
        super().__init__(token="hf_local_stand_in")
        self.root = root
        self.commits: list[list[str]] = []

    def create_repo(self, repo_id: str, **kwargs: object) -> RepoUrl:
        (self.root / repo_id).mkdir(parents=True, exist_ok=True)
        return RepoUrl(f"https://huggingface.co/datasets/{repo_id}")

    def create_commit(self, repo_id: str, operations: list, **kwargs: object) -> CommitInfo:
        for op in operations:
            target = self.root / repo_id / op.path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            with op.as_file() as src:
                target.write_bytes(src.read())
        self.commits.append([op.path_in_repo for op in operations])
        n = len(self.commits)
        return CommitInfo(
            commit_url=f"local/{n}",
            commit_message="Scheduled Commit",
            commit_description="",
            oid=f"{n:040x}",
        )


def test_hub_mirror_pushes_jsonl_through_commit_scheduler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub_api = LocalHub(tmp_path / "hub")
    monkeypatch.delenv("ENSEMBLE_RATINGS_REPO", raising=False)
    assert HubSync.from_env(tmp_path / "staging", hf_api=hub_api) is None
    monkeypatch.setenv("ENSEMBLE_RATINGS_REPO", "me/ratings")
    monkeypatch.setenv("HF_TOKEN", "hf_local_stand_in")
    monkeypatch.setenv("ENSEMBLE_RATINGS_EVERY", "soon")
    with pytest.raises(EnsembleError, match="positive number of minutes"):
        HubSync.from_env(tmp_path / "staging", hf_api=hub_api)
    monkeypatch.setenv("ENSEMBLE_RATINGS_EVERY", "60")  # only our explicit pushes in this test
    sync = HubSync.from_env(tmp_path / "staging", hf_api=hub_api)
    assert sync is not None
    try:
        store = RatingsStore(tmp_path / "r.db", hub=sync)
        j = judgement()
        store.add_judgement(j)
        store.add_judgement(j)  # a resubmit is not mirrored twice
        store.add_judgement(judgement(ranking=None, ratings=[1, 2, 3], best=2))
        sync.push().result(timeout=30)
        pushed = tmp_path / "hub" / "me/ratings" / "ratings" / sync.file.name
        assert read_export(pushed) == store.judgements()
        assert sync.push().result(timeout=30) is None  # nothing changed: no empty commit
        store.add_judgement(judgement(session_id="s2"))
        n_commits = len(hub_api.commits)
    finally:
        sync.close()
    assert len(hub_api.commits) == n_commits + 1
    assert read_export(pushed) == store.judgements()


# -- fitting -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ranking", "ratings"])
def test_fit_recovers_hidden_listener_weights(tmp_path: Path, kind: str) -> None:
    judgements = synthetic_judgements(200, TRUE, WRONG, kind=kind, noise=0.15, seed=1)
    result = fit_weights(judgements, holdout=0.25, seed=0)
    held = result.metrics["held_out"]
    assert held["judgements"] == 50
    # The wrong old weights agree with held-out listeners far less than the fitted ones.
    assert held["new"]["pairwise_accuracy"] > held["old"]["pairwise_accuracy"] + 0.15
    assert held["new"]["kendall_tau"] > held["old"]["kendall_tau"] + 0.3
    assert held["gain"]["pairwise_accuracy_ci95"][0] > 0
    parts = list(TRUE)
    new, true = np.array([result.weights[p] for p in parts]), np.array(list(TRUE.values()))
    assert new @ true / np.linalg.norm(new) / np.linalg.norm(true) > 0.98
    assert sum(abs(v) for v in result.weights.values()) == pytest.approx(sum(WRONG.values()))
    path = save_weights(result, tmp_path / "w.json")
    assert load_weights(path) == result.weights
    assert json.loads(path.read_text())["fitted_on"] == 200


def test_fit_does_not_claim_gains_over_true_weights() -> None:
    # Control: when the ranker already uses the listener's weights, fitting cannot beat it much.
    result = fit_weights(synthetic_judgements(200, TRUE, TRUE, noise=0.15, seed=2), seed=0)
    held = result.metrics["held_out"]
    assert abs(held["gain"]["pairwise_accuracy"]) < 0.03
    low, high = held["gain"]["pairwise_accuracy_ci95"]
    assert low <= 0 <= high


def test_fit_errors_are_sentences() -> None:
    with pytest.raises(EnsembleError, match="no judgements yet"):
        fit_weights([])
    with pytest.raises(EnsembleError, match="at least 2"):
        fit_weights([judgement()])
    assert fit_weights([judgement()], holdout=0).fitted_on == 1
    unweighted = judgement(settings={})  # no stored weights: every shared non-aggregate part
    assert list(fit_weights([unweighted], holdout=0).weights) == ["relevance"]
    with pytest.raises(EnsembleError, match=r"No judgement .* compares"):
        fit_weights([judgement(), judgement()], parts=["loudness"])


def test_pairwise_outcomes_and_tau() -> None:
    assert pairwise_outcomes(judgement(ranking=[2, 0, 1])) == [
        (2, 0, 1.0),
        (2, 1, 1.0),
        (0, 1, 1.0),
    ]
    rated = judgement(ranking=None, ratings=[3, 5, 3], best=None)
    assert pairwise_outcomes(rated) == [(1, 0, 1.0), (0, 2, 0.5), (1, 2, 1.0)]
    assert pairwise_outcomes(judgement(ranking=None, best=1)) == [(1, 0, 1.0), (1, 2, 1.0)]
    from scipy.stats import kendalltau

    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = rng.integers(0, 4, 8).astype(float), rng.integers(0, 4, 8).astype(float)
        assert kendall_tau(x, y) == pytest.approx(kendalltau(x, y).statistic)


def test_disagreements() -> None:
    j = judgement(k=4, ranking=[3, 0, 1, 2])  # listener's favourite was the model's last
    found = disagreements(j)
    assert (found[0].chunk_id, found[0].human_rank, found[0].model_rank) == ("c3", 1, 4)
    assert found[0].shift == 3 and {d.shift for d in found[1:]} == {-1}
    assert disagreements(judgement(ranking=[0, 1, 2])) == []
    # With weights, model ranks are recomputed: coherence rises with the index here.
    assert disagreements(judgement(ranking=[2, 1, 0]), {"coherence": 1.0}) == []
    best_only = disagreements(judgement(ranking=None, best=2))
    assert [(d.candidate, d.human_rank, d.model_rank) for d in best_only] == [(2, 1, 3)]


# -- CLI -----------------------------------------------------------------------------------------


def test_cli_export_fit_stats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "r.db"
    store = RatingsStore(db)
    for j in synthetic_judgements(40, TRUE, WRONG, seed=3):
        store.add_judgement(j)
    store.add_listen_event("sim-0", "chunk-0-0", 5.0)
    assert main(["ratings", "stats", "--db", str(db)]) == 0
    assert "40 (40 ranked" in capsys.readouterr().out
    assert main(["ratings", "export", "--db", str(db), "--format", "jsonl"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 40
    out = tmp_path / "r.csv"
    assert main(["ratings", "export", "--db", str(db), "--format", "csv", "--out", str(out)]) == 0
    assert len(read_export(out)) == 40
    weights = tmp_path / "w.json"
    assert main(["ratings", "fit", "--db", str(db), "--out", str(weights), "--seed", "1"]) == 0
    report = capsys.readouterr().out
    assert "held-out: 10 judgements" in report and "pairwise accuracy" in report
    assert set(load_weights(weights)) == set(TRUE)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["stats", "--db", "{tmp}/missing.db"], "There is no ratings database"),
        (["fit", "--db", "{tmp}/empty.db"], "no judgements yet"),
        (["fit", "--db", "{tmp}/empty.db", "--holdout", "1.5"], "held-out fraction"),
        (
            ["fit", "--db", "{tmp}/empty.db", "--old-weights", "{tmp}/nope.json"],
            "Cannot read weights file",
        ),
        (
            ["export", "--db", "{tmp}/empty.db", "--out", "{tmp}/no/dir/x.csv"],
            "Cannot write the export",
        ),
    ],
)
def test_cli_errors_are_one_readable_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    RatingsStore(tmp_path / "empty.db")
    code = main(["ratings", *(a.format(tmp=tmp_path) for a in args)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


def test_cli_subprocess_has_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ensemble", "ratings", "fit", "--db", str(tmp_path / "x.db")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: There is no ratings database")
    assert "Traceback" not in proc.stderr


def test_a_kept_candidate_is_a_preference_where_the_round_has_no_order(tmp_path: Path) -> None:
    store = RatingsStore(tmp_path / "r.sqlite")
    skipped = judgement(ranking=None, verdict="skip")
    ranked = judgement()
    for j in (skipped, ranked):
        store.add_judgement(j)
    store.add_keep(skipped.uid, "c2")
    store.add_keep(ranked.uid, "c0")
    assert store.keeps() == {skipped.uid: ["c2"], ranked.uid: ["c0"]}
    assert store.stats()["keeps"] == 2
    assert pairwise_outcomes(store.judgements()[0]) == []  # a skip alone says nothing
    kept_skip, kept_ranked = with_keeps(store.judgements(), store.keeps())
    assert sorted(pairwise_outcomes(kept_skip)) == [(2, 0, 1.0), (2, 1, 1.0)]
    kept_skip.validate()
    assert kept_ranked.ranking == ranked.ranking and kept_ranked.best is None  # its own order
