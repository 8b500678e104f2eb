"""Load and durability: 8 listeners at once, then the app is killed; no rating may be lost.

The app runs as `python app.py` (its real entry point, configured through the environment) and
eight gradio_client sessions each perform, listen, rank and submit concurrently. Right after the
last submit returns, the process gets SIGKILL; every judgement a listener saw confirmed must be in
the SQLite file. A second test has 8 threads submit through the handler at the same instant.
"""

from __future__ import annotations

import copy
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

from ensemble.listening import (
    ENV_CHECKPOINTS,
    ENV_DB,
    ENV_INDEX,
    ENV_LISTEN,
    ENV_WEIGHTS,
    MAX_CANDIDATES,
    Room,
    RoomConfig,
    RoundOptions,
    Session,
)
from ensemble.ratings import RatingsStore
from tests.conftest import free_port
from tests.test_app_handlers import make_room_files

REPO = Path(__file__).resolve().parent.parent
LISTENERS = 8
TOP_K = 2
LISTEN_SECONDS = 0.2
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
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(root / "gradio"),
        "TMPDIR": str(root / "tmp"),  # the room's rendered files, left behind by the kill
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


def _listener(url: str, example: Path, i: int) -> tuple[int, list[int]]:
    """One listener's whole visit; returns the rating id the page confirmed and the slot ranks."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, download_files=False, analytics_enabled=False)
    status = client.predict(
        handle_file(str(example)), ["violin"], "violin", TOP_K, 1, 1.0, 0.15, 0.15, 0.1,
        True, 0, 0, 0, -60, False, api_name="/perform",
    )[0]
    assert f"{TOP_K} candidates to rank" in status, status
    for letter in "AB"[:TOP_K]:
        client.predict(api_name=f"/play_{letter}")
        time.sleep(LISTEN_SECONDS + 0.1)
        client.predict(api_name=f"/pause_{letter}")
    ranks = [1, 2] if i % 2 else [2, 1]
    reveal = client.predict(*ranks, *[None] * (MAX_CANDIDATES - TOP_K), api_name="/submit")[0]
    found = re.search(r"Saved\*\* as rating #(\d+)", reveal)
    assert found, reveal
    return int(found.group(1)), ranks


def test_eight_listeners_then_a_kill_lose_nothing(served: tuple[str, Path, Path, object]) -> None:
    url, db, example, process = served
    with ThreadPoolExecutor(LISTENERS) as pool:
        confirmed = list(pool.map(lambda i: _listener(url, example, i), range(LISTENERS)))
    process.kill()  # type: ignore[attr-defined]  # SIGKILL: no shutdown hook runs
    process.wait()  # type: ignore[attr-defined]

    stored = {j.id: j for j in RatingsStore(db, create=False).judgements()}
    ids = [rating_id for rating_id, _ in confirmed]
    assert len(set(ids)) == LISTENERS
    assert set(ids) <= set(stored)  # warm-up stores nothing, so these are all the rows
    assert len({stored[i].session_id for i in ids}) == LISTENERS
    for rating_id, ranks in confirmed:
        j = stored[rating_id]
        best_slot = ranks.index(1)
        assert j.ranking is not None and j.ranking[0] == j.shown_order[best_slot]
        assert all(s >= LISTEN_SECONDS for s in j.listen_seconds)
    events = RatingsStore(db, create=False).stats()["listen_events"]
    assert events == LISTENERS * TOP_K


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
    room = Room(replace(room_config, ratings_db=tmp_path / "ratings.sqlite",
                        work_dir=tmp_path / "work"))
    base = Session()
    example = room_config.ratings_db.parent / "example.wav"
    room.run_round(base, example, RoundOptions(instruments=["violin"], top_k=3))
    sessions = []
    for _ in range(LISTENERS):
        session = Session()
        session.round = replace(copy.deepcopy(base.round), uid=uuid.uuid4().hex,
                                listened=[1.0] * 3)
        sessions.append(session)
    barrier = threading.Barrier(LISTENERS)
    errors: list[BaseException] = []

    def submit(session: Session) -> None:
        barrier.wait()
        try:
            room.submit(session, [1, 2, 3])
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
