"""The listening room: what `app.py` wires to Gradio, testable without a browser.

One *round* is an input performed by the ensemble plus its Top-K retrieved continuations. The
candidates are shown blind, as listening tests do: in a shuffled order, under neutral letters,
served under per-round random names (`ensemble.room_media`), with their scores and model ranks
kept server-side until the listener has submitted. Submitting unlocks once each candidate has
been *heard* for a few seconds: media time at no more than real-time pace, reported by the page
and checked on the server (`ensemble.room_gate`). The judgement (verdict, ranking and ties,
reason, listen times, the scores, versions, settings, and flags when the checks failed) is
committed to SQLite before the scores are revealed, so a crash after the reveal cannot lose it.

`Room.from_config` loads what all sessions share (`room_setup.load_resources`); the `Room` hands
it to parts with one job each, which the app calls directly: `rounds` (`room_round`: making a
round), `gate` (`room_listen`: the listen gate), `recorder` (`room_record`: storing a
judgement), `sessions` (`room_sessions`: sessions and their files), `songs` (`room_song`: the
song loop), `weights` (`room_weights`), `queue` (`room_queue`: one round at a time). Everything
of one listener lives in their `Session` (`room_state`, a `gr.State` value).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ensemble.audio import ClippingWarning, load_audio
from ensemble.config import SAMPLE_RATE
from ensemble.errors import EnsembleError
from ensemble.room_config import APP_MAX_SECONDS, RoomConfig, RoundOptions
from ensemble.room_listen import ListenGate
from ensemble.room_media import MediaRegistry
from ensemble.room_queue import RoundQueue
from ensemble.room_record import Recorder
from ensemble.room_round import RoundRenderer
from ensemble.room_sessions import Sessions
from ensemble.room_setup import RoomResources, load_resources
from ensemble.room_song import SongLoop
from ensemble.room_state import Input, RoundResult, Session
from ensemble.song import Song

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]


class Room:
    """The parts of the listening room, built around resources loaded once."""

    def __init__(self, config: RoomConfig, resources: RoomResources) -> None:
        self.config = config
        self.resources = resources
        self.roles = resources.roles
        self.weights = resources.weights
        self.versions = resources.versions
        self.store = resources.store
        self.media = MediaRegistry()
        self.queue = RoundQueue()
        # Guards in-place session updates: a player's pause and another's play may be handled
        # on two worker threads at once for the same session.
        lock = threading.Lock()
        self.sessions = Sessions(resources.work_dir, self.media, config, lock)
        self.gate = ListenGate(self.store, config.listen_seconds, lock)
        self.recorder = Recorder(self.store, self.gate, self.media, self.versions, config, lock)
        self.rounds = RoundRenderer(resources, self.media, config.listen_seconds, lock)
        self.songs = SongLoop(resources.ensemble, self.store)

    @classmethod
    def from_config(cls, config: RoomConfig) -> Room:
        """Load the models, index, ratings store and weights ``config`` names (see
        `room_setup.load_resources`) and build the room on them."""
        return cls(config, load_resources(config))

    def describe(self) -> str:
        """One paragraph for the page: what is loaded and which weights rank the candidates."""
        offered = set(self.roles.leaders) | set(self.roles.followers)
        names = [n for n in self.resources.ensemble.available if n in offered]
        lines = [
            f"Instruments: {', '.join(names)} (models {self.versions.model}).",
            self.resources.index_note,
            self.weights.note,
        ]
        return " ".join(line for line in lines if line)

    def warm_up(self) -> None:
        """Pay one-off costs (ONNX/torch start-up, numba compilation of pYIN, FAISS load) now,
        so the first listener's round is as fast as the rest."""
        t = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
        tone = (0.3 * np.sin(2 * np.pi * 330.0 * t)).astype(np.float32)
        session = Session()
        leader = self.roles.default_leader()
        options = RoundOptions(instruments=self.roles.default_band(leader), leader=leader, top_k=1)
        try:
            self.run_round(session, Input(tone, []), options)
            self.rounds.analyse(session)
        except EnsembleError as exc:  # e.g. a missing conductor: the page will say so
            log.warning("warm-up round failed: %s", exc)
        finally:
            self.sessions.end(session)

    def check_upload(self, path: str | Path | None, trim: bool = False,
                     session: Session | None = None) -> str:
        """A sentence about an upload, checked on arrival (empty when there is none); the
        upload is then ``session``'s, removed with it."""
        if path is None or str(path).strip() == "":
            return ""
        if session is not None:
            self.sessions.claim_upload(session, Path(path).resolve())
        try:
            given = read_input(path, trim)
        except EnsembleError as exc:
            return f"⚠️ {exc}"
        seconds = len(given.audio) / SAMPLE_RATE
        return f"✓ {seconds:.1f} s of audio, ready to perform. {' '.join(given.notes)}".strip()

    def run_round(
        self,
        session: Session,
        source: str | Path | Input | None,
        options: RoundOptions,
        progress: Progress | None = None,
        *,
        ticket: int | None = None,
    ) -> RoundResult:
        """Perform the input (a path, or an `Input` already read) and prepare its blind Top-K
        listening test, when its turn in the room's line comes (``ticket`` from `queue.join`,
        else a place is taken now).

        Raises:
            EnsembleError: unusable input or choices; the message is for the listener.
        """
        ticket = self.queue.join() if ticket is None else ticket
        seconds = None
        try:
            self.queue.wait_turn(ticket)
            started = time.perf_counter()
            given = source if isinstance(source, Input) else read_input(source, options.trim)
            result = self._run_round(session, given, options, progress)
            seconds = time.perf_counter() - started
        finally:
            self.queue.leave(ticket, seconds)
        return result

    def _run_round(self, session: Session, given: Input, options: RoundOptions,
                   progress: Progress | None) -> RoundResult:
        report = progress or (lambda _fraction, _text: None)
        started = time.perf_counter()
        if given.path is not None:
            self.sessions.claim_upload(session, given.path)
        if not given.continues_song:
            session.song = Song(given.audio, len(given.audio) / SAMPLE_RATE)
        options = self.roles.check(options)
        folder = self.sessions.round_folder(session, uuid.uuid4().hex)
        try:
            made = self.rounds.make(session, given, options, folder, report)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self.sessions.replace_round(session, made.round, folder, made.performance)
        elapsed = time.perf_counter() - started
        log.info("round %s ready in %.2f s", folder.name, elapsed)
        report(1.0, "Done")
        return RoundResult(messages=made.messages, mix_path=made.files[0], files=made.files,
                           shown=made.shown, gate=self.gate.state(session), seconds=elapsed)


def read_input(path: str | Path | None, trim: bool = False) -> Input:
    """The listener's audio, decoded (done before a round waits its turn: a broken file is
    named at once, and the upload may age out of Gradio's cache during a long wait).

    Raises:
        EnsembleError: no audio, or audio Ensemble cannot use; the message is for the user.
    """
    if path is None or str(path).strip() == "":
        raise EnsembleError("Upload or record some audio, or pick an example, first.")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ClippingWarning)
        audio = load_audio(path, max_seconds=APP_MAX_SECONDS, trim=trim)
    notes = [str(w.message) for w in caught if issubclass(w.category, ClippingWarning)]
    if trim and len(audio) >= int(APP_MAX_SECONDS * SAMPLE_RATE):
        notes.append(f"Only the first {APP_MAX_SECONDS:g} s were used.")
    return Input(audio, notes, Path(path).resolve())
