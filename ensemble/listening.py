"""The listening room's handlers: what `app.py` wires to Gradio, testable without a browser.

One *round* is an input performed by the ensemble plus its Top-K retrieved continuations. The
candidates are shown blind, as listening tests do: in a shuffled order, under neutral letters,
served under per-round random names (`ensemble.room_media`), with their scores and model ranks
kept server-side until the listener has submitted. Submitting unlocks once each candidate has
been *heard* for a few seconds: media time at no more than real-time pace, reported by the page
and checked on the server (`ensemble.room_gate`). The judgement (verdict, ranking and ties,
reason, listen times, the scores, versions, settings, and flags when the checks failed) is
committed to SQLite before the scores are revealed, so a crash after the reveal cannot lose it.

Parts with one job each: `room_setup` (what is loaded once), `room_round` (rendering the
candidates), `room_gate` (the listen gate), `room_media` (serving the files), `room_verdict`
(reading the form and the reveal), `room_files` (disk clean-up). The `Room` here holds what all
sessions share; everything of one listener lives in their `Session` (a `gr.State` value).
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ensemble.arrangement_midi import write_arrangement_midi
from ensemble.audio import ClippingWarning, fingerprint, load_audio, write_audio
from ensemble.config import SAMPLE_RATE
from ensemble.errors import EnsembleError
from ensemble.features import FeatureFrame
from ensemble.limits import DEFAULT_TOP_K, HOPS, TOP_K, check_continue
from ensemble.metrics import metrics_json
from ensemble.perform import Ensemble, Performance, PerformSettings
from ensemble.plots import song_timeline_figure
from ensemble.rag import DEFAULT_WEIGHTS, PART_NAMES, Continuation, continue_audio, parse_weights
from ensemble.rag.continuation import TAIL_SECONDS
from ensemble.ratings import Candidate, HubSync, Judgement, RatingsStore
from ensemble.ratings.judgement import RATE_LIMIT_PER_HOUR
from ensemble.room_files import claim, remove, remove_orphans, sweep
from ensemble.room_gate import ListenLedger, parse_reports
from ensemble.room_media import MediaRegistry
from ensemble.room_queue import RoundQueue
from ensemble.room_round import (
    PERFORMANCE_COLUMNS,
    candidate_figure,
    overview_figure,
    performance_figure,
    performance_rows,
    random_name,
    render_candidates,
)
from ensemble.room_setup import (
    REPO_ROOT,
    app_version,
    file_stamp,
    initial_weights,
    instrument_roles,
    open_room_index,
    tree_digest,
)
from ensemble.room_verdict import (
    DETAIL_COLUMNS,
    LETTERS,
    REVEAL_COLUMNS,
    Reveal,
    Submission,
    read_submission,
    reveal,
)
from ensemble.song import Song, write_song

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = [
    "DETAIL_COLUMNS",
    "LETTERS",
    "PERFORMANCE_COLUMNS",
    "REVEAL_COLUMNS",
    "Input",
    "Reveal",
    "Room",
    "RoomConfig",
    "RoundOptions",
    "Session",
    "Submission",
]

log = logging.getLogger(__name__)

ENV_CHECKPOINTS = "ENSEMBLE_CHECKPOINTS"  # folder or Hugging Face repo id
ENV_INDEX = "ENSEMBLE_INDEX"
ENV_DB = "ENSEMBLE_RATINGS_DB"
ENV_WEIGHTS = "ENSEMBLE_WEIGHTS"
ENV_LISTEN = "ENSEMBLE_LISTEN_SECONDS"
ENV_SESSION_TTL = "ENSEMBLE_SESSION_TTL_S"

APP_MAX_SECONDS = 30.0  # longer uploads are refused (or trimmed on request): rounds stay short
LISTEN_SECONDS = 3.0  # each candidate must be heard this long (capped at half its length)
MAX_CANDIDATES = int(TOP_K.high)  # UI slots: Top-K's limit, shared with the CLI
MAX_HOPS = int(HOPS.high)
PREFERRED_BAND = ("cello", "bass", "drums", "viola", "piano", "flute")
SESSION_TTL_S = 1800.0  # a session idle this long is ended (its files and state removed)
WORK_PREFIX = "ensemble-room-"

Progress = Callable[[float, str], None]


# -- configuration and shared resources --------------------------------------------------------


@dataclass
class RoomConfig:
    """Where the room finds its models, index and database; `from_env` reads the defaults."""

    checkpoints: str | Path | None = None  # None: the shipped checkpoints/
    index: Path | None = REPO_ROOT / "examples" / "index"
    ratings_db: Path = REPO_ROOT / "data" / "ratings.sqlite"
    weights: Path | None = REPO_ROOT / "data" / "ratings_weights.json"
    work_dir: Path | None = None  # rendered files; None: a fresh folder in the temp dir
    listen_seconds: float = LISTEN_SECONDS
    session_ttl_s: float = SESSION_TTL_S
    rate_limit_per_hour: int = RATE_LIMIT_PER_HOUR

    @classmethod
    def from_env(cls) -> RoomConfig:
        env = os.environ
        return cls(
            checkpoints=env.get(ENV_CHECKPOINTS) or None,
            index=Path(env.get(ENV_INDEX) or cls.index),
            ratings_db=Path(env.get(ENV_DB) or cls.ratings_db),
            weights=Path(env.get(ENV_WEIGHTS) or cls.weights),
            listen_seconds=_seconds(env, ENV_LISTEN, LISTEN_SECONDS, 0.0),
            session_ttl_s=_seconds(env, ENV_SESSION_TTL, SESSION_TTL_S, 1.0),
        )


def _seconds(env: Any, name: str, default: float, least: float) -> float:
    text = env.get(name, str(default))
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not least <= value < float("inf"):
        raise EnsembleError(f"{name} must be a number of seconds >= {least:g}, not {text!r}.")
    return value


@dataclass
class RoundOptions:
    """What the listener chose for a round (the app's controls)."""

    instruments: list[str]  # the band; the leader is added when missing
    leader: str | None = None
    top_k: int = DEFAULT_TOP_K
    hops: int = 1
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    perform: PerformSettings = field(default_factory=PerformSettings)
    trim: bool = False  # keep the first APP_MAX_SECONDS of a longer upload instead of refusing it


def work_folder(config: RoomConfig) -> Path:
    """The room's own folder; folders left by crashed runs are removed first."""
    if config.work_dir is not None:
        return claim(Path(config.work_dir))
    parent = Path(tempfile.gettempdir())
    remove_orphans(parent, WORK_PREFIX)
    return claim(parent / f"{WORK_PREFIX}{os.getpid()}")


class Room:
    """Models, index, ratings store and weights, loaded once and shared by every session."""

    def __init__(self, config: RoomConfig) -> None:
        self.config = config
        self.ensemble = Ensemble.from_pretrained(config.checkpoints)
        self.kinds = {name: self.ensemble.instrument(name).kind for name in self.ensemble.available}
        self.leaders, self.followers = instrument_roles(self.ensemble)
        self.index, self.index_note = open_room_index(config.index)
        self.embedder = (
            self.ensemble.instrument(self.index.config.embedder)
            if self.index is not None and self.index.config.embedder in self.kinds
            else None
        )
        hub = HubSync.from_env(Path(config.ratings_db).parent / "hub-staging")
        self.store = RatingsStore(config.ratings_db, hub=hub)
        self._weights_stamp = file_stamp(config.weights)
        self.weights, self.weights_learned, self.weights_note = initial_weights(config.weights)
        self.model_version = tree_digest(self.ensemble.root, ("model.safetensors", "config.json"))
        self.index_version = (
            f"{self.index.version.name}:"
            f"{tree_digest(self.index.version, ('config.json', 'files.json'))}"
            if self.index is not None
            else ""
        )
        self.app_version = app_version()
        self.work_dir = work_folder(config)
        self.listen_seconds = config.listen_seconds
        self.media = MediaRegistry()
        # Where the web layer keeps uploads and copies of the files it serves (Gradio's cache):
        # a session's go with it. Set by the app with `keep_copies_in`.
        self.copies_dir: Path | None = None
        self._shared_copies: frozenset[Path] = frozenset()
        self._uploads: dict[str, set[Path]] = {}  # session id -> the uploads it used
        self.queue = RoundQueue()
        # Guards in-place session updates: a player's pause and another's play may be handled
        # on two worker threads at once for the same session.
        self._lock = threading.Lock()

    @property
    def instruments(self) -> list[str]:
        """Every instrument the page may offer (it can lead or follow)."""
        return [n for n in self.kinds if n in self.leaders or n in self.followers]

    def default_leader(self) -> str | None:
        return "violin" if "violin" in self.leaders else next(iter(self.leaders), None)

    def band_choices(self, leader: str | None) -> list[str]:
        """Instruments that can follow ``leader`` (every follower but the leader itself)."""
        return [n for n in self.followers if n != leader]

    def default_band(self, leader: str | None) -> list[str]:
        """Up to three followers for the first page load."""
        offered = self.band_choices(leader)
        return [n for n in PREFERRED_BAND if n in offered][:3] or offered[:2]

    def refresh_weights(self) -> dict[str, float]:
        """The room's ranking weights, re-read when the weights file changed since the last
        look (a `ratings fit` while the app runs), so a new page gets them without a restart."""
        stamp = file_stamp(self.config.weights)
        with self._lock:
            if stamp != self._weights_stamp:
                self._weights_stamp = stamp
                self.weights, self.weights_learned, self.weights_note = initial_weights(
                    self.config.weights)
                log.info("ranking weights reloaded: %s", self.weights_note)
            return dict(self.weights)

    def describe(self) -> str:
        """One paragraph for the page: what is loaded and which weights rank the candidates."""
        lines = [
            f"Instruments: {', '.join(self.instruments)} (models {self.model_version}).",
            self.index_note,
            self.weights_note,
        ]
        return " ".join(line for line in lines if line)

    def warm_up(self) -> None:
        """Pay one-off costs (ONNX/torch start-up, numba compilation of pYIN, FAISS load) now,
        so the first listener's round is as fast as the rest."""
        t = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
        tone = (0.3 * np.sin(2 * np.pi * 330.0 * t)).astype(np.float32)
        session = Session()
        leader = self.default_leader()
        options = RoundOptions(instruments=self.default_band(leader), leader=leader, top_k=1)
        try:
            self.run_round(session, Input(tone, []), options)
            self.analyse_performance(session)
        except EnsembleError as exc:  # e.g. a missing conductor: the page will say so
            log.warning("warm-up round failed: %s", exc)
        finally:
            self.end_session(session)

    # -- handlers ------------------------------------------------------------------------------

    def check_upload(self, path: str | Path | None, trim: bool = False,
                     session: Session | None = None) -> str:
        """A sentence about an upload, checked on arrival (empty when there is none); the
        upload is then ``session``'s, removed with it."""
        if path is None or str(path).strip() == "":
            return ""
        if session is not None:
            self._claim_upload(session, Path(path).resolve())
        try:
            given = self.read_input(path, trim)
        except EnsembleError as exc:
            return f"⚠️ {exc}"
        seconds = len(given.audio) / SAMPLE_RATE
        return f"✓ {seconds:.1f} s of audio, ready to perform. {' '.join(given.notes)}".strip()

    def read_input(self, path: str | Path | None, trim: bool = False) -> Input:
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
            given = source if isinstance(source, Input) else self.read_input(source, options.trim)
            result = self._run_round(session, given, options, progress)
            seconds = time.perf_counter() - started
        finally:
            self.queue.leave(ticket, seconds)
        return result

    def _run_round(self, session: Session, given: Input, options: RoundOptions,
                   progress: Progress | None) -> RoundResult:
        report = progress or (lambda _fraction, _text: None)
        started = time.perf_counter()
        messages, audio = list(given.notes), given.audio
        if given.path is not None:
            self._claim_upload(session, given.path)
        if not given.continues_song:
            session.song = Song(audio, len(audio) / SAMPLE_RATE)
        options = self._validate(options)
        round_uid = uuid.uuid4().hex
        folder = self._round_folder(session, round_uid)
        try:
            report(0.1, "Performing the ensemble")
            performance = self.ensemble.perform(
                audio, options.instruments, options.leader, options.perform
            )
            messages += performance.messages
            files = _write_performance(folder, performance)
            report(0.3, "Searching the index for continuations")
            continuations = self._continuations(
                audio, options, messages, performance.features, session
            )
            new_round, shown = (
                self._prepare_round(session, round_uid, audio, continuations, performance,
                                    options, folder, report)
                if continuations
                else (None, None)
            )
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self._replace_round(session, new_round, folder, performance)
        elapsed = time.perf_counter() - started
        log.info("round %s ready in %.2f s", round_uid, elapsed)
        report(1.0, "Done")
        return RoundResult(messages=messages, mix_path=files[0], files=files, shown=shown,
                           gate=self.gate(session), seconds=elapsed)

    def _replace_round(self, session: Session, new_round: Round | None, folder: Path,
                       performance: Performance) -> None:
        with self._lock:
            old = session.round
            self._drop_round_files(session)
            session.round = new_round
            session.round_folder = folder
            session.performance = performance
        if old is not None:
            self.media.drop(old.tokens)  # the previous round's clips are not served any more

    def keep(self, session: Session | None, letter: str | None) -> Input:
        """Append candidate ``letter`` of the judged round to the session's song and record the
        keep beside the judgement; returns the song's ending to continue from.

        Raises:
            EnsembleError: nothing performed yet, the round not judged, or no such candidate.
        """
        current, song = self._song_round(session)
        if current.judgement is None:
            raise EnsembleError("Judge this round first (submit or skip); then keep the "
                                "candidate you liked and continue from it.")
        if letter not in current.shown:
            raise EnsembleError(f"Choose a candidate to keep: {', '.join(current.shown)}.")
        index = current.shown_order[current.shown.index(letter)]
        kept = current.continuations[index]
        session.song = song.keep(kept)  # type: ignore[union-attr]
        self.store.add_keep(current.judgement.uid, "+".join(kept.chunk_ids))
        return self._song_ending(session.song)

    def undo(self, session: Session | None) -> Input:
        """Drop the song's last section; returns the restored ending to continue from."""
        _, song = self._song_round(session)
        session.song = song.undo()  # type: ignore[union-attr]
        return self._song_ending(session.song)

    def timeline(self, session: Session | None) -> go.Figure | None:
        """The song so far; sources are named once the current round is judged."""
        if session is None or session.song is None:
            return None
        revealed = session.round is None or session.round.judgement is not None
        return song_timeline_figure(session.song, reveal=revealed)

    def song_files(self, session: Session | None) -> list[Path]:
        """The whole song performed with the current round's band: song.wav, stems, song.mid and
        song.json (in the session's round folder, removed with it)."""
        current, song = self._song_round(session)
        performance = self.ensemble.perform(
            song.audio, current.instruments, current.settings.get("leader")
        )
        folder = session.round_folder / random_name("song", "")  # type: ignore[union-attr]
        write_song(folder, song, performance, app_round=current.uid)
        return [folder / "song.wav", folder / "song.mid", folder / "song.json",
                *sorted((folder / "stems").glob("*.wav"))]  # fmt: skip

    def _song_round(self, session: Session | None) -> tuple[Round, Song]:
        if session is None or session.round is None or session.song is None:
            raise EnsembleError("Perform first: the song starts with your input.")
        return session.round, session.song

    @staticmethod
    def _song_ending(song: Song) -> Input:
        """The song's last APP_MAX_SECONDS, the input of the next round."""
        tail = song.audio[-int(APP_MAX_SECONDS * SAMPLE_RATE) :]
        note = f"Continuing your song ({song.duration_s:.1f} s, {len(song.sections)} section(s))."
        return Input(tail, [note], continues_song=True)

    def analyse_performance(
        self, session: Session | None, progress: Progress | None = None
    ) -> PerformanceAnalysis | None:
        """Song metrics of the input, the mix and each stem, as a figure, a table and
        metrics.json (None when there is no performance to analyse).

        A separate step from `run_round`: five or more pYIN passes would otherwise double the
        time before the listener can start comparing candidates.
        """
        with self._lock:
            performance = session.performance if session is not None else None
            folder = session.round_folder if session is not None else None
        if performance is None or folder is None:
            return None
        (progress or (lambda _fraction, _text: None))(0.1, "Measuring melody and dynamics")
        named = performance.metrics()
        path = folder / random_name("metrics", ".json")
        try:
            path.write_text(_json(metrics_json(named)))
        except OSError:  # a newer round replaced this one's folder meanwhile
            return None
        with self._lock:
            if session is not None and session.performance is performance:
                session.performance = None  # the arrays are not needed any more
        files = [*sorted(folder.glob("mix-*.wav")), *sorted((folder / "stems").glob("*.wav")),
                 *sorted(folder.glob("arrangement-*.mid")), path]
        return PerformanceAnalysis(performance_figure(named), performance_rows(named), files)

    def listen(self, session: Session | None, reports: Any, now: float | None = None) -> Gate:
        """Apply the page's player reports (see `ensemble.room_gate`) and return the gate.

        Raises:
            EnsembleError: reports that are not well-formed.
        """
        parsed = parse_reports(reports)
        now = time.monotonic() if now is None else now
        events: list[tuple[str, str, float, str]] = []
        with self._lock:
            current = session.round if session is not None else None
            if current is not None and not current.submitted:
                for item in parsed:
                    if not 0 <= item.slot < len(current.shown_order):
                        continue
                    index = current.shown_order[item.slot]
                    credit = current.ledger.report(index, item, now)
                    if item.kind == "pause" and credit > 0:
                        events.append((session.session_id,  # type: ignore[union-attr]
                                       current.candidates[index].chunk_id, credit,
                                       current.fingerprint))
        # Outside the lock: an fsync'd write takes milliseconds and must not block other players.
        for session_id, chunk_id, seconds, fp in events:
            try:
                self.store.add_listen_event(session_id, chunk_id, seconds, input_fingerprint=fp)
            except EnsembleError as exc:
                log.warning("listen event not stored: %s", exc)
        return self.gate(session)

    def gate(self, session: Session | None) -> Gate:
        with self._lock:
            return self._gate_locked(session)

    def _gate_locked(self, session: Session | None) -> Gate:
        current = session.round if session is not None else None
        if current is None:
            return Gate(False, "Perform an input first: its continuations will appear here.")
        if current.submitted:
            return Gate(False, "Submitted. Perform another input for a new round.")
        parts, missing = [], 0
        for slot, index in enumerate(current.shown_order):
            need = current.required_seconds(index, self.listen_seconds)
            heard = current.ledger.heard[index]
            if heard >= need:
                parts.append(f"{LETTERS[slot]} ✓")
            else:
                missing += 1
                parts.append(f"{LETTERS[slot]} {heard:.1f}/{need:.1f} s")
        if missing:
            return Gate(
                False,
                f"Heard: {' · '.join(parts)}. Listen to each candidate for "
                f"{self.listen_seconds:g} s, one at a time, at normal speed or slower, to unlock "
                "Submit.",
            )
        return Gate(True, f"Heard: {' · '.join(parts)}. Rank the candidates and submit.")

    def submit(self, session: Session | None, form: Submission) -> Reveal:
        """Store the listener's verdict on the current round and reveal the scores.

        The judgement is stored even when the listening checks fail: it then carries flags
        (see `ensemble.ratings.judgement.FLAGS`) and `ratings fit` leaves it out by default.

        Raises:
            EnsembleError: nothing to judge, listening not finished, or the form is incomplete.
        """
        with self._lock:
            current = session.round if session is not None else None
            if current is None or session is None:
                raise EnsembleError("There is nothing to rank yet; perform an input first.")
            verdict = read_submission(form, current.shown_order)
            gate = self._gate_locked(session)
            if not current.submitted and not gate.ready and verdict.verdict != "skip":
                raise EnsembleError(
                    "Listen to every candidate first: " + gate.text.split(". ")[0] + "."
                )
            existing = current.judgement
            flags = current.ledger.flags([self.media.fetched(token) for token in current.tokens])
        if existing is not None:
            if (existing.ranking, existing.verdict) != (verdict.ranking, verdict.verdict):
                raise EnsembleError("This round was already submitted; perform a new input.")
            return reveal(existing, current.shown, current.metrics)
        judgement = Judgement(
            session_id=session.session_id,
            input_fingerprint=current.fingerprint,
            candidates=current.candidates,
            shown_order=list(current.shown_order),
            listen_seconds=[round(s, 3) for s in current.ledger.heard],
            ranking=verdict.ranking,
            verdict=verdict.verdict,
            ties=verdict.ties,
            reason=verdict.reason,
            flags=flags + self._listener_flags(session, current),
            local_id=session.local_id,
            instruments=list(current.instruments),
            settings=current.settings,
            model_version=self.model_version,
            index_version=self.index_version,
            app_version=self.app_version,
            uid=current.uid,
        )
        # add_judgement is idempotent on the uid, so a double click stores one row.
        self.store.add_judgement(judgement)
        with self._lock:
            current.judgement = judgement
        log.info("judgement %s stored (%s, flags %s)", judgement.id, judgement.verdict,
                 judgement.flags or "none")
        return reveal(judgement, current.shown, current.metrics)

    def _listener_flags(self, session: Session, current: Round) -> list[str]:
        """heard_before / duplicate / rate_limited, from what this listener submitted before
        (this session, or any session of the same browser)."""
        since = (datetime.now(UTC) - timedelta(hours=1)).isoformat(timespec="milliseconds")
        revealed, judged, recent = self.store.listener_history(
            session.session_id, session.local_id, since)
        chunks = sorted(c.chunk_id for c in current.candidates)
        flags = []
        if revealed & set(chunks):
            flags.append("heard_before")
        if (current.fingerprint, *chunks) in judged:
            flags.append("duplicate")
        if recent >= self.config.rate_limit_per_hour:
            flags.append("rate_limited")
        return flags

    def start_session(self, session: Session | None, local_id: str | None) -> Session:
        """The page's session, made on load, with the browser's own id (kept in localStorage,
        no cookie) so a returning listener is recognised."""
        session = session or Session()
        text = (local_id or "").strip()
        if text and len(text) <= 64 and text.replace("-", "").isalnum():
            session.local_id = text
        return session

    def keep_copies_in(self, folder: Path) -> None:
        """The web layer's cache; what is there already (the examples) is shared by every
        session and never removed with one."""
        self.copies_dir = Path(folder)
        self._shared_copies = frozenset(p for p in self.copies_dir.rglob("*") if p.is_file())

    def end_session(self, session: Session | None) -> None:
        """Delete a session's files, uploads and copies, and stop serving its clips (page
        closed, state expired)."""
        if session is None:
            return
        self.media.drop_owner(session.session_id)
        remove(self.work_dir / session.session_id, self.copies_dir)
        self._release_uploads(session.session_id)

    def _claim_upload(self, session: Session, path: Path) -> None:
        """``path`` is used by ``session`` (identical uploads share one cached file, so it is
        removed with the last session using it)."""
        with self._lock:
            self._uploads.setdefault(session.session_id, set()).add(path)

    def _release_uploads(self, session_id: str) -> None:
        with self._lock:
            mine = self._uploads.pop(session_id, set())
            used = set().union(*self._uploads.values())
        for upload in mine - used:
            if self.copies_dir in upload.parents and upload not in self._shared_copies:
                upload.unlink(missing_ok=True)

    def sweep(self) -> list[str]:
        """Remove sessions idle past the time limit (API clients never close a page)."""
        gone = sweep(self.work_dir, self.config.session_ttl_s, self.copies_dir)
        for session_id in gone:
            self.media.drop_owner(session_id)
            self._release_uploads(session_id)
        return gone

    # -- helpers -------------------------------------------------------------------------------

    def _validate(self, options: RoundOptions) -> RoundOptions:
        leader = options.leader or self.default_leader()
        band = [n for n in options.instruments if n and n != leader]
        if leader is None or leader not in self.leaders:
            raise EnsembleError(f"Choose a leader to play your melody: {', '.join(self.leaders)}.")
        refused = [n for n in band if n not in self.followers]
        if refused:
            raise EnsembleError(
                f"{', '.join(refused)} cannot play along (yet); the band can be "
                f"{', '.join(self.band_choices(leader))}."
            )
        weights = parse_weights({k: float(v) for k, v in options.weights.items()})
        check_continue(options.top_k, options.hops, weights)
        chosen = options.instruments if leader in options.instruments else [leader, *band]
        return RoundOptions(
            instruments=[n for n in chosen if n], leader=leader, top_k=int(options.top_k),
            hops=int(options.hops), weights=weights, perform=options.perform, trim=options.trim,
        )

    def _continuations(self, audio: np.ndarray, options: RoundOptions, messages: list[str],
                       features: FeatureFrame, session: Session) -> list[Continuation]:
        """Top-K continuations with raw audio, leaving out any this listener has had revealed
        (blind across rounds); problems become messages, since the performance is still worth
        hearing without them."""
        if self.index is None:
            messages.append(f"No continuations: {self.index_note}")
            return []
        revealed = self.store.listener_history(session.session_id, session.local_id)[0]
        extra = min(len(revealed), 2 * MAX_CANDIDATES)  # room to replace what was heard
        try:
            found = continue_audio(
                audio, self.index, top_k=options.top_k + extra, hops=options.hops,
                weights=options.weights, embedder=self.embedder, render=True, features=features,
            )
        except EnsembleError as exc:
            messages.append(f"No continuations: {exc}")
            return []
        if not found:
            messages.append("The index has no continuation for this input.")
            return []
        messages += found[0].notes
        fresh, heard = [], []
        for item in found:
            (heard if "+".join(item.chunk_ids) in revealed else fresh).append(item)
        if len(fresh) < options.top_k and heard:
            messages.append("Some candidates were revealed to you in an earlier round; this "
                            "round's rating is kept aside as heard before.")
        kept = (fresh + heard)[: options.top_k]
        kept.sort(key=lambda c: c.rank)
        for rank, item in enumerate(kept, start=1):
            item.rank = rank  # the model's order among what is shown
        return kept

    def _weights_source(self, weights: dict[str, float]) -> str:
        """Which weights ranked a round: the room's learned ones, the defaults, or the
        listener's own (set in Advanced); `ratings fit` analyses may want to tell them apart."""
        if all(abs(weights[k] - self.weights[k]) < 1e-9 for k in PART_NAMES):
            return "learned" if self.weights_learned else "default"
        return "custom"

    def _round_folder(self, session: Session, round_uid: str) -> Path:
        folder = self.work_dir / session.session_id / round_uid
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _drop_round_files(self, session: Session) -> None:
        # The previous round's files, and the copies Gradio made when it sent them.
        if session.round_folder is not None:
            remove(session.round_folder, self.copies_dir)

    def _prepare_round(
        self,
        session: Session,
        round_uid: str,
        audio: np.ndarray,
        continuations: list[Continuation],
        performance: Performance,
        options: RoundOptions,
        folder: Path,
        report: Progress,
    ) -> tuple[Round, ShownRound]:
        k = len(continuations)
        shown_order = list(range(k))
        random.Random(uuid.uuid4().int).shuffle(shown_order)
        letter_of = {index: LETTERS[slot] for slot, index in enumerate(shown_order)}
        lineup = (options.instruments, performance.leader, options.perform)
        rendered = render_candidates(self.ensemble, continuations, lineup, folder, report)
        tokens = [self.media.add(r.audio_path, session.session_id) for r in rendered]
        tail_s = min(TAIL_SECONDS, len(audio) / SAMPLE_RATE)
        chunk_s = self.index.config.chunk_seconds if self.index is not None else 0.0
        shown = ShownRound(
            candidates=[
                ShownCandidate(
                    letter=letter_of[i],
                    url=self.media.url(tokens[i]),
                    figure=candidate_figure(
                        rendered[i].metrics, f"Candidate {letter_of[i]}",
                        [tail_s + h * chunk_s for h in range(len(continuations[i].chunk_ids))]),
                    duration_s=rendered[i].duration_s,
                    need_s=min(self.listen_seconds, 0.5 * rendered[i].duration_s),
                )
                for i in shown_order
            ],
            overview=overview_figure(
                {f"Candidate {letter_of[i]}": rendered[i].metrics for i in shown_order}, tail_s),
        )
        new_round = Round(
            uid=round_uid,
            fingerprint=fingerprint(audio),
            candidates=[Candidate.from_dict(item.to_json()) for item in continuations],
            shown_order=shown_order,
            ledger=ListenLedger([r.duration_s for r in rendered]),
            tokens=tokens,
            instruments=options.instruments,
            settings=self._settings(options, performance.leader, audio),
            metrics=[r.metrics.summary() for r in rendered],
            shown=[letter_of[i] for i in shown_order],
            continuations=continuations,
        )
        return new_round, shown

    def _settings(self, options: RoundOptions, leader: str, audio: np.ndarray) -> dict[str, Any]:
        """What a judgement records about how its round was made."""
        perform_settings = asdict(options.perform)
        perform_settings["mute"] = list(perform_settings["mute"])
        return {
            "top_k": options.top_k,
            "hops": options.hops,
            "weights": options.weights,
            "weights_source": self._weights_source(options.weights),
            "leader": leader,
            "perform": perform_settings,
            "listen_seconds": self.listen_seconds,
            "input_seconds": round(len(audio) / SAMPLE_RATE, 3),
            "trim": options.trim,
        }


# -- per-session state -------------------------------------------------------------------------


@dataclass
class Round:
    """One blind listening test; candidate indices are positions in the model's order."""

    uid: str  # also the judgement uid, so a resubmitted form is stored once
    fingerprint: str
    candidates: list[Candidate]
    shown_order: list[int]  # slot -> candidate index
    ledger: ListenLedger  # what was heard of each candidate, checked
    tokens: list[str]  # served-file tokens, per candidate index
    instruments: list[str]
    settings: dict[str, Any]
    metrics: list[dict[str, float | None]]  # song-metric summary per candidate index
    shown: list[str]  # letters, per slot
    continuations: list[Continuation] = field(default_factory=list)  # raw audio, to keep
    judgement: Judgement | None = None

    @property
    def submitted(self) -> bool:
        return self.judgement is not None

    def required_seconds(self, index: int, listen_seconds: float) -> float:
        # A clip shorter than twice the requirement only has to be heard halfway.
        return min(listen_seconds, 0.5 * self.ledger.durations[index])


@dataclass
class Session:
    """Everything of one listener (a browser tab): their ids and their current round."""

    session_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    local_id: str = ""  # the browser's own id from localStorage; "" for API clients
    round: Round | None = None
    round_folder: Path | None = None
    performance: Performance | None = None  # until `analyse_performance` has measured it
    song: Song | None = None  # the input and the continuations kept after it


# -- what handlers return ----------------------------------------------------------------------


@dataclass
class Input:
    """The listener's audio, read and checked: (N,) float32 at 16 kHz, and notes about it."""

    audio: np.ndarray
    notes: list[str]
    path: Path | None = None  # the upload it came from
    continues_song: bool = False  # the ending of the session's song, not a new input


@dataclass
class Gate:
    ready: bool  # every candidate heard long enough: Submit can unlock
    text: str


@dataclass
class ShownCandidate:
    letter: str
    url: str  # relative to the page, served by `ensemble.room_media`
    figure: go.Figure
    duration_s: float
    need_s: float  # seconds to hear before Submit unlocks


@dataclass
class ShownRound:
    candidates: list[ShownCandidate]  # in shown order
    overview: go.Figure  # every candidate on one plot


@dataclass
class RoundResult:
    messages: list[str]
    mix_path: Path
    files: list[Path]  # mix and stems
    shown: ShownRound | None  # None when there are no continuations
    gate: Gate
    seconds: float  # wall time of the round

    @property
    def candidates(self) -> list[ShownCandidate]:
        return self.shown.candidates if self.shown is not None else []


@dataclass
class PerformanceAnalysis:
    figure: go.Figure
    table: list[list[Any]]  # PERFORMANCE_COLUMNS, one row per signal
    files: list[Path]  # mix, stems, metrics.json


def _write_performance(folder: Path, performance: Performance) -> list[Path]:
    """The mix, the stems and the arrangement's MIDI under per-round random names; the mix
    first."""
    mix = write_audio(folder / random_name("mix"), performance.mix)
    stems = [write_audio(folder / "stems" / random_name(name), stem)
             for name, stem in performance.stems.items()]  # fmt: skip
    midi = write_arrangement_midi(folder / random_name("arrangement", ".mid"), performance)
    return [mix, *stems, midi]


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, allow_nan=False) + "\n"
