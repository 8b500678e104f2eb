"""Load: 8 listening sessions submit at once, as threads and as separate processes, into one new
database file. Every rating must land; nobody may see "database is locked"."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from ensemble.ratings import RatingsStore
from ensemble.ratings.synthetic import synthetic_judgements

REPO = Path(__file__).resolve().parents[1]
SESSIONS = 8
PER_SESSION = 25
WEIGHTS = {"relevance": 0.5, "coherence": 0.5}


def session(db: Path, name: str, seed: int, start: threading.Barrier | None = None) -> set[str]:
    """One listener: plays every candidate, submits, reads back its session; returns its uids."""
    judgements = synthetic_judgements(PER_SESSION, WEIGHTS, WEIGHTS, kind="ratings", seed=seed)
    if start is not None:
        start.wait()
    store = RatingsStore(db)  # every session opens (and may create) the file at the same time
    for j in judgements:
        j.session_id = name
        for cand in j.candidates:
            store.add_listen_event(name, cand.chunk_id, 3.0, input_fingerprint=j.input_fingerprint)
        store.add_judgement(j)
        store.judgements(session_id=name)  # readers interleave with writers
    return {j.uid for j in judgements}


def check(db: Path, uids: set[str]) -> None:
    store = RatingsStore(db, create=False)
    stored = store.judgements()
    assert len(stored) == SESSIONS * PER_SESSION == len(uids)
    assert {j.uid for j in stored} == uids
    assert sorted(j.id for j in stored) == list(range(1, len(stored) + 1))
    assert store.stats()["listen_events"] == SESSIONS * PER_SESSION * 5


def test_concurrent_threads(tmp_path: Path) -> None:
    db = tmp_path / "ratings.db"
    start = threading.Barrier(SESSIONS)
    results: dict[int, set[str]] = {}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = session(db, f"thread-{i}", seed=i, start=start)
        except BaseException as exc:  # re-raised below with the thread's error
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(SESSIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    check(db, set().union(*results.values()))


def test_concurrent_processes(tmp_path: Path) -> None:
    db, go = tmp_path / "ratings.db", tmp_path / "go"
    worker = textwrap.dedent(f"""
        import os, sys, time
        sys.path[:0] = [{str(REPO)!r}, {str(Path(__file__).parent)!r}]
        from test_ratings_load import session
        print("ready", flush=True)
        while not os.path.exists({str(go)!r}):  # start together: a cross-process barrier
            time.sleep(0.002)
        print(" ".join(sorted(session(__import__("pathlib").Path({str(db)!r}),
                                      sys.argv[1], int(sys.argv[2])))))
    """)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", worker, f"proc-{i}", str(100 + i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(SESSIONS)
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    go.touch()
    start = time.monotonic()
    uids: set[str] = set()
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert "locked" not in err
        uids |= set(out.split())
    assert time.monotonic() - start < 60
    check(db, uids)
