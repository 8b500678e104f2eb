"""Load, bounded disk and durability of the app as it runs (`python app.py`, configured through
the environment), driven by gradio_client sessions that perform, fetch and hear each candidate,
rank and submit concurrently:

- 12 listeners at once all complete, unflagged; once their sessions time out, the disk the app
  uses (rendered clips, Gradio's cache and uploads) is back to what it was before them.
- 8 more at once, then SIGKILL right after the last submit: every judgement a listener saw
  confirmed must be in the SQLite file; the next start removes what the killed run left.
- 8 threads submit through the handler at the same instant.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from ensemble.listening import Room
from ensemble.ratings import RatingsStore
from ensemble.room_config import (
    ENV_CHECKPOINTS,
    ENV_DB,
    ENV_INDEX,
    ENV_LISTEN,
    ENV_SESSION_TTL,
    ENV_WEIGHTS,
    MAX_CANDIDATES,
    WORK_PREFIX,
    RoomConfig,
    RoundOptions,
)
from ensemble.room_files import disk_usage, remove_orphans
from ensemble.room_state import Session
from ensemble.room_verdict import Submission
from tests.conftest import free_port
from tests.test_app_handlers import make_room_files

REPO = Path(__file__).resolve().parent.parent
LISTENERS = 8
CROWD = 12
TOP_K = 2
LISTEN_SECONDS = 0.2
SESSION_TTL_S = 30.0  # longer than the queue, short enough to see sessions end (default 30 min)
START_TIMEOUT_S = 300.0  # imports, model loading and the warm-up round on a busy 2-core machine


@pytest.fixture(scope="module")
def room_config(tmp_path_factory: pytest.TempPathFactory) -> RoomConfig:
    return make_room_files(tmp_path_factory.mktemp("load-room"), listen_seconds=LISTEN_SECONDS)


@pytest.fixture(scope="module")
def served(room_config: RoomConfig) -> Iterator[tuple[str, Path, Path, object]]:
    config = room_config
    root = config.ratings_db.parent
    port = free_port()
    (root / "tmp").mkdir()
    env = {
        **os.environ,
        ENV_CHECKPOINTS: str(config.checkpoints),
        ENV_INDEX: str(config.index),
        ENV_DB: str(config.ratings_db),
        ENV_WEIGHTS: str(root / "no-weights.json"),
        ENV_LISTEN: str(LISTEN_SECONDS),
        ENV_SESSION_TTL: str(SESSION_TTL_S),
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        # The room's rendered files and (the app owning GRADIO_TEMP_DIR) Gradio's uploads and
        # cache, all in folders the next start removes if this run is killed.
        "TMPDIR": str(root / "tmp"),
    }
    log = (root / "app.log").open("w")
    process = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"app.py exited with {process.returncode}:\n"
                            f"{(root / 'app.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("app.py did not start in time:\n"
                                f"{(root / 'app.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield url, config.ratings_db, root / "example.wav", process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        log.close()


def _listener(url: str, example: Path, i: int) -> tuple[int, list[int], float]:
    """One listener's whole visit; returns the rating id the page confirmed, the slot ranks,
    and the seconds the round took to arrive (queueing included)."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, download_files=False, analytics_enabled=False)
    asked = time.monotonic()
    out = client.predict(
        handle_file(str(example)), "violin", [], TOP_K, 1, 1.0, 0.15, 0.15, 0.1, 0.1,
        True, 0, 0, 0, -60, False, api_name="/perform",
    )
    waited = time.monotonic() - asked
    assert f"{TOP_K} candidates to judge" in out[1], out[1]
    for slot, src in enumerate(re.findall(r'src="([^"]+)"', out[4])):
        with urllib.request.urlopen(url + src, timeout=60) as clip:  # what a player fetches
            clip.read()
        _report(client, slot, "play", 0.0)
        time.sleep(LISTEN_SECONDS + 0.1)
        _report(client, slot, "pause", LISTEN_SECONDS + 0.1)
    ranks = [1, 2] if i % 2 else [2, 1]
    out = client.predict([], "", *ranks, *[None] * (MAX_CANDIDATES - TOP_K), api_name="/submit")
    reveal = out if isinstance(out, str) else out[0]
    found = re.search(r"Saved\*\* as rating #(\d+)", reveal)
    assert found, reveal
    return int(found.group(1)), ranks, waited


def _report(client: object, slot: int, kind: str, pos: float) -> None:
    text = json.dumps([{"slot": slot, "kind": kind, "pos": pos, "t": time.monotonic()}])
    client.predict(text, api_name="/listen")  # type: ignore[attr-defined]


def _disk(root: Path) -> int:
    """Bytes the app keeps: its rendered clips and Gradio's cache and uploads (all in TMPDIR)."""
    return disk_usage(root / "tmp")


def test_twelve_listeners_complete_and_disk_returns(
    served: tuple[str, Path, Path, object]
) -> None:
    url, db, example, _ = served
    root = db.parent
    before = _disk(root)
    with ThreadPoolExecutor(CROWD) as pool:
        done = list(pool.map(lambda i: _listener(url, example, i), range(CROWD)))
    during = _disk(root)
    stored = {j.id: j for j in RatingsStore(db, create=False).judgements()}
    assert len({rating_id for rating_id, _, _ in done}) == CROWD
    assert all(stored[rating_id].flags == [] for rating_id, _, _ in done)
    waits = sorted(w for _, _, w in done)
    # Sessions end SESSION_TTL_S after their last event; their files go with them.
    deadline = time.monotonic() + 3 * SESSION_TTL_S
    while _disk(root) > before and time.monotonic() < deadline:
        time.sleep(0.5)
    after = _disk(root)
    print(f"\n{CROWD} listeners: round waits median {waits[CROWD // 2]:.1f} s, worst "
          f"{waits[-1]:.1f} s; disk {before} B before, {during} B after the rounds, {after} B "
          f"once the sessions ended")
    assert during > before and after <= before


def test_eight_listeners_then_a_kill_lose_nothing(served: tuple[str, Path, Path, object]) -> None:
    url, db, example, process = served
    with ThreadPoolExecutor(LISTENERS) as pool:
        confirmed = list(pool.map(lambda i: _listener(url, example, i), range(LISTENERS)))
    process.kill()  # type: ignore[attr-defined]  # SIGKILL: no shutdown hook runs
    process.wait()  # type: ignore[attr-defined]

    stored = {j.id: j for j in RatingsStore(db, create=False).judgements()}
    ids = [rating_id for rating_id, _, _ in confirmed]
    assert len(set(ids)) == LISTENERS
    assert set(ids) <= set(stored)
    assert len({stored[i].session_id for i in ids}) == LISTENERS
    for rating_id, ranks, _ in confirmed:
        j = stored[rating_id]
        best_slot = ranks.index(1)
        assert j.ranking is not None and j.ranking[0] == j.shown_order[best_slot]
        assert all(s >= LISTEN_SECONDS for s in j.listen_seconds)
    events = RatingsStore(db, create=False).stats()["listen_events"]
    assert events == (CROWD + LISTENERS) * TOP_K
    # What the killed run left (clips, uploads) is removed by the next start's first step.
    left = sorted(p.name for p in (db.parent / "tmp").glob(f"{WORK_PREFIX}*"))
    assert len(left) == 2  # the room's folder and the uploads folder
    assert len(remove_orphans(db.parent / "tmp", WORK_PREFIX)) == 2
    assert not list((db.parent / "tmp").glob(f"{WORK_PREFIX}*"))


def test_app_without_checkpoints_says_why(tmp_path: Path) -> None:
    empty = tmp_path / "checkpoints"
    empty.mkdir()
    env = {**os.environ, ENV_CHECKPOINTS: str(empty), ENV_DB: str(tmp_path / "r.sqlite"),
           "GRADIO_ANALYTICS_ENABLED": "False"}
    done = subprocess.run([sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: No instrument checkpoints")


def test_simultaneous_submits_through_the_handler(room_config: RoomConfig, tmp_path: Path) -> None:
    """8 sessions submit at the same instant on 8 threads (Gradio's workers do this)."""
    room = Room.from_config(replace(room_config, ratings_db=tmp_path / "ratings.sqlite",
                        work_dir=tmp_path / "work"))
    base = Session()
    example = room_config.ratings_db.parent / "example.wav"
    room.run_round(base, example, RoundOptions(instruments=["violin"], top_k=3))
    sessions = []
    for _ in range(LISTENERS):
        session = Session()
        session.round = replace(copy.deepcopy(base.round), uid=uuid.uuid4().hex)
        session.round.ledger.heard = [1.0] * 3
        sessions.append(session)
    barrier = threading.Barrier(LISTENERS)
    errors: list[BaseException] = []

    def submit(session: Session) -> None:
        barrier.wait()
        try:
            room.recorder.submit(session, Submission([1, 2, 3]))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(s,)) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert room.store.count() == LISTENERS
    for session in sessions:
        assert len(room.store.judgements(session.session_id)) == 1
