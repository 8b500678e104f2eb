"""The listen gate against API clients (gradio_client on the launched app): reports without
downloading the audio, or with two candidates playing at once, give judgements that are stored
but flagged, and `ratings fit` leaves them out; a client that fetches and plays each candidate
in turn, in real time, is not flagged."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ensemble.cli import main
from ensemble.listening import Room
from ensemble.ratings import fit_weights
from ensemble.room_config import MAX_CANDIDATES
from tests.conftest import served_room

LISTEN_SECONDS = 0.5
TOP_K = 2


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Room, Path]]:
    with served_room(tmp_path_factory.mktemp("api-room"), LISTEN_SECONDS) as served:
        yield served  # type: ignore[misc]


def _round(url: str, example: Path, client: object = None) -> tuple[object, list[str]]:
    """A (new) client with a fresh round of TOP_K candidates; returns it and the clips' URLs."""
    from gradio_client import Client, handle_file

    client = client or Client(url, verbose=False, download_files=False,
                              analytics_enabled=False)
    out = client.predict(handle_file(str(example)), "violin", ["cello"], TOP_K, 1, 1.0, 0.15,
                         0.15, 0.1, 0.1, True, 0, 0, 0, -60, False, api_name="/perform")
    status, players = out[1], out[4]
    assert f"{TOP_K} candidates to judge" in status, status
    return client, [url + src for src in re.findall(r'src="([^"]+)"', players)]


def _report(client: object, *reports: tuple[int, str, float]) -> str:
    now = time.monotonic()
    text = json.dumps([{"slot": s, "kind": k, "pos": p, "t": now} for s, k, p in reports])
    return _first(client.predict(text, api_name="/listen"))  # type: ignore[attr-defined]


def _first(out: object) -> str:
    # Buttons among the outputs carry no value for API clients: one value comes back bare.
    return out if isinstance(out, str) else out[0]  # type: ignore[index,return-value]


def _submit(client: object) -> int:
    ranks = [1, 2] + [None] * (MAX_CANDIDATES - TOP_K)
    reveal = _first(client.predict([], "", *ranks, api_name="/submit"))  # type: ignore[attr-defined]
    found = re.search(r"Saved\*\* as rating #(\d+)", reveal)
    assert found, reveal
    return int(found.group(1))


def _fetch(clips: list[str]) -> None:
    for clip in clips:
        with urllib.request.urlopen(clip, timeout=30) as response:
            assert response.headers["content-type"] == "audio/wav" and response.read(4) == b"RIFF"


def test_gaming_the_gate_is_flagged_and_left_out_of_fitting(
    served: tuple[str, Room, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, room, example = served
    hold = LISTEN_SECONDS + 0.15

    # 1. play/pause through the API, no audio downloaded.
    blind, _ = _round(url, example)
    for slot in range(TOP_K):
        _report(blind, (slot, "play", 0.0))
        time.sleep(hold)
        gate = _report(blind, (slot, "pause", hold))
    assert "Rank the candidates and submit" in gate
    no_fetch = _submit(blind)

    # 2. both candidates downloaded but played at the same time.
    overlap, clips = _round(url, example)
    _fetch(clips)
    _report(overlap, (0, "play", 0.0), (1, "play", 0.0))
    time.sleep(hold + 1.0)  # longer than the overlap tolerance
    _report(overlap, (0, "pause", hold + 1.0), (1, "pause", hold + 1.0))
    both = _submit(overlap)

    # 3. fetched, then heard one after the other in real time: nothing to flag.
    honest, clips = _round(url, example)
    _fetch(clips)
    for slot in range(TOP_K):
        _report(honest, (slot, "play", 0.0))
        time.sleep(hold)
        _report(honest, (slot, "pause", hold))
    clean = _submit(honest)

    stored = {j.id: j for j in room.store.judgements()}
    assert stored[no_fetch].flags == ["not_fetched"]
    assert stored[both].flags == ["overlap"]
    assert stored[clean].flags == []
    assert urllib.request.urlopen(clips[0]).status == 200  # served while the round is current
    result = fit_weights(list(stored.values()), holdout=0, resamples=10)
    assert result.fitted_on == 1 and result.excluded == {"not_fetched": 1, "overlap": 1}
    db = str(room.config.ratings_db)
    assert main(["ratings", "fit", "--db", db, "--holdout", "0", "--resamples", "10",
                 "--min-judgements", "1", "--out", str(tmp_path / "w.json")]) == 0
    report = capsys.readouterr().out
    assert "fitted on 1 judgements" in report
    assert "left out as flagged: 1 not fetched, 1 overlap" in report


def test_clips_are_served_only_while_their_round_is_current(
    served: tuple[str, Room, Path]
) -> None:
    url, _, example = served
    client, clips = _round(url, example)
    _fetch(clips)
    with pytest.raises(urllib.error.HTTPError, match="404"):
        urllib.request.urlopen(url + "room-audio/not-a-token.wav")
    _, again = _round(url, example, client)  # the same listener, the same input, a new round
    assert not set(again) & set(clips)  # blind across rounds: no URL comes back
    _fetch(again)
    for old in clips:
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(old)
