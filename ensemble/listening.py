"""The listening room's handlers: what `app.py` wires to Gradio, testable without a browser.

One *round* is an input performed by the ensemble plus its Top-K retrieved continuations. The
candidates are shown blind, as listening tests do: in a shuffled order, under neutral letters
(files and plots included), with their scores and model ranks kept server-side in the session
until the listener has submitted. Submitting unlocks only after each candidate has been played for
a few seconds, measured between its player's play and pause events. The judgement (shown order,
listen times, the human ranking, the scores, versions and settings) is committed to SQLite before
the scores are revealed, so a crash after the reveal cannot lose it.

Shared, read-only resources (models, index, ratings store, weights) live in a `Room`; everything
that belongs to one listener lives in their `Session` (a `gr.State` value).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ensemble import __version__
from ensemble.audio import ClippingWarning, fingerprint, load_audio, write_audio
from ensemble.config import SAMPLE_RATE
from ensemble.errors import EnsembleError
from ensemble.features import FeatureFrame
from ensemble.limits import DEFAULT_TOP_K, HOPS, TOP_K, check_continue
from ensemble.metrics import SongMetrics, metrics_json, song_metrics
from ensemble.mix import downmix
from ensemble.perform import Ensemble, Performance, PerformSettings
from ensemble.rag import (
    DEFAULT_WEIGHTS,
    PART_NAMES,
    Continuation,
    RagIndex,
    continue_audio,
    open_index,
    parse_weights,
)
from ensemble.rag.continuation import TAIL_SECONDS
from ensemble.ratings import Candidate, HubSync, Judgement, RatingsStore, disagreements
from ensemble.ratings.fit import human_utility, kendall_tau

if TYPE_CHECKING:
    import plotly.graph_objects as go

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_CHECKPOINTS = "ENSEMBLE_CHECKPOINTS"  # folder or Hugging Face repo id
ENV_INDEX = "ENSEMBLE_INDEX"
ENV_DB = "ENSEMBLE_RATINGS_DB"
ENV_WEIGHTS = "ENSEMBLE_WEIGHTS"
ENV_LISTEN = "ENSEMBLE_LISTEN_SECONDS"

APP_MAX_SECONDS = 30.0  # longer uploads are refused (or trimmed on request): rounds stay short
LISTEN_SECONDS = 3.0  # each candidate must be played this long (capped at half its length)
MAX_CANDIDATES = int(TOP_K.high)  # UI slots: Top-K's limit, shared with the CLI
MAX_HOPS = int(HOPS.high)
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
PREFERRED_LINEUP = ("violin", "cello", "bass", "drums", "flute", "viola", "piano")
CANDIDATE_PLOT_HEIGHT = 380
RENDER_WORKERS = 2  # candidates rendered at once: one per core of the 2-core target machine

Progress = Callable[[float, str], None]

PERFORMANCE_COLUMNS = [
    "signal", "duration (s)", "peak", "average energy", "dynamic range (dB)",
    "melodic complexity", "voiced share", "median f0 (Hz)",
]
REVEAL_COLUMNS = [
    "candidate", "your rank", "model rank", "composite", "relevance", "coherence",
    "pitch coh.", "chroma coh.", "loudness coh.", "source", "start (s)", "listened (s)",
    "melodic complexity", "dynamic range (dB)", "mean RMS",
]


# -- configuration and shared resources --------------------------------------------------------


@dataclass
class RoomConfig:
    """Where the room finds its models, index and database; `from_env` reads the defaults."""

    checkpoints: str | Path | None = None  # None: the shipped checkpoints/
    index: Path | None = REPO_ROOT / "examples" / "index"
    ratings_db: Path = REPO_ROOT / "data" / "ratings.sqlite"
    weights: Path | None = REPO_ROOT / "data" / "ratings_weights.json"
    work_dir: Path | None = None  # rendered files; None: a fresh temporary folder
    listen_seconds: float = LISTEN_SECONDS

    @classmethod
    def from_env(cls) -> RoomConfig:
        env = os.environ
        listen = env.get(ENV_LISTEN, str(LISTEN_SECONDS))
        try:
            listen_seconds = float(listen)
        except ValueError:
            listen_seconds = -1.0
        if not 0.0 <= listen_seconds < float("inf"):
            raise EnsembleError(f"{ENV_LISTEN} must be a number of seconds >= 0, not {listen!r}.")
        return cls(
            checkpoints=env.get(ENV_CHECKPOINTS) or None,
            index=Path(env.get(ENV_INDEX) or cls.index),
            ratings_db=Path(env.get(ENV_DB) or cls.ratings_db),
            weights=Path(env.get(ENV_WEIGHTS) or cls.weights),
            listen_seconds=listen_seconds,
        )


@dataclass
class RoundOptions:
    """What the listener chose for a round (the app's controls)."""

    instruments: list[str]
    leader: str | None = None
    top_k: int = DEFAULT_TOP_K
    hops: int = 1
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    perform: PerformSettings = field(default_factory=PerformSettings)
    trim: bool = False  # keep the first APP_MAX_SECONDS of a longer upload instead of refusing it


class Room:
    """Models, index, ratings store and weights, loaded once and shared by every session."""

    def __init__(self, config: RoomConfig) -> None:
        self.config = config
        self.ensemble = Ensemble.from_pretrained(config.checkpoints)
        self.kinds = {name: self.ensemble.instrument(name).kind for name in self.ensemble.available}
        self.index, self.index_note = _open_index(config.index)
        self.embedder = (
            self.ensemble.instrument(self.index.config.embedder)
            if self.index is not None and self.index.config.embedder in self.kinds
            else None
        )
        hub = HubSync.from_env(Path(config.ratings_db).parent / "hub-staging")
        self.store = RatingsStore(config.ratings_db, hub=hub)
        self._weights_stamp = _file_stamp(config.weights)
        self.weights, self.weights_learned, self.weights_note = _initial_weights(config.weights)
        self.model_version = _tree_digest(self.ensemble.root, ("model.safetensors", "config.json"))
        self.index_version = (
            f"{self.index.version.name}:"
            f"{_tree_digest(self.index.version, ('config.json', 'files.json'))}"
            if self.index is not None
            else ""
        )
        self.app_version = _app_version()
        work = config.work_dir or Path(tempfile.mkdtemp(prefix="ensemble-room-"))
        self.work_dir = Path(work)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.listen_seconds = config.listen_seconds
        # Guards in-place session updates: a player's pause and another's play may be handled
        # on two worker threads at once for the same session.
        self._lock = threading.Lock()

    @property
    def instruments(self) -> list[str]:
        return list(self.kinds)

    def default_lineup(self) -> list[str]:
        """Up to four instruments, a pitched leader first, for the first page load."""
        chosen = [n for n in PREFERRED_LINEUP if n in self.kinds][:4]
        return chosen or self.instruments[:3]

    def leader_choices(
        self, instruments: Sequence[str], current: str | None = None
    ) -> tuple[list[str], str | None]:
        """Pitched instruments among ``instruments`` (a drum kit cannot play a melody) and the
        leader to select: ``current`` while it is still chosen, else the first of them."""
        pitched = [n for n in instruments if self.kinds.get(n) == "pitched"]
        if current in pitched:
            return pitched, current
        return pitched, (pitched[0] if pitched else None)

    def refresh_weights(self) -> dict[str, float]:
        """The room's ranking weights, re-read when the weights file changed since the last
        look (a `ratings fit` while the app runs), so a new page gets them without a restart."""
        stamp = _file_stamp(self.config.weights)
        with self._lock:
            if stamp != self._weights_stamp:
                self._weights_stamp = stamp
                loaded = _initial_weights(self.config.weights)
                self.weights, self.weights_learned, self.weights_note = loaded
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
        options = RoundOptions(instruments=self.default_lineup(), top_k=1)
        try:
            self.run_round(session, None, options, audio=tone)
            self.analyse_performance(session)
        except EnsembleError as exc:  # e.g. a missing conductor: the page will say so
            log.warning("warm-up round failed: %s", exc)
        finally:
            self.end_session(session)

    # -- handlers ------------------------------------------------------------------------------

    def run_round(
        self,
        session: Session,
        audio_path: str | Path | None,
        options: RoundOptions,
        progress: Progress | None = None,
        *,
        audio: np.ndarray | None = None,
    ) -> RoundResult:
        """Perform the input and prepare its blind Top-K listening test.

        ``audio`` (already loaded, (N,) float32 16 kHz) replaces ``audio_path`` when given.

        Raises:
            EnsembleError: unusable input or choices; the message is for the listener.
        """
        report = progress or (lambda _fraction, _text: None)
        started = time.perf_counter()
        messages: list[str] = []
        report(0.02, "Reading the audio")
        if audio is None:
            audio = self._load(audio_path, options.trim, messages)
        options = self._validate(options)
        round_uid = uuid.uuid4().hex
        folder = self._round_folder(session, round_uid)
        try:
            report(0.1, "Performing the ensemble")
            performance = self.ensemble.perform(
                audio, options.instruments, options.leader, options.perform
            )
            messages += performance.messages
            mix_path = write_audio(folder / "mix.wav", performance.mix)
            files = [mix_path] + [
                write_audio(folder / "stems" / f"{name}.wav", stem)
                for name, stem in performance.stems.items()
            ]
            report(0.3, "Searching the index for continuations")
            continuations = self._continuations(
                audio, options, messages, performance.features
            )
            new_round, shown = (
                self._prepare_round(
                    round_uid, audio, continuations, performance, options, folder, report
                )
                if continuations
                else (None, [])
            )
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

        with self._lock:
            self._drop_round_files(session)
            session.round = new_round
            session.round_folder = folder
            session.performance = performance
        elapsed = time.perf_counter() - started
        log.info("round %s ready in %.2f s", round_uid, elapsed)
        report(1.0, "Done")
        return RoundResult(
            messages=messages,
            mix_path=mix_path,
            files=files,
            candidates=shown,
            gate=self.gate(session),
            seconds=elapsed,
        )

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
        path = folder / "metrics.json"
        try:
            path.write_text(_json(metrics_json(named)))
        except OSError:  # a newer round replaced this one's folder meanwhile
            return None
        with self._lock:
            if session is not None and session.performance is performance:
                session.performance = None  # the arrays are not needed any more
        files = [folder / "mix.wav", *sorted((folder / "stems").glob("*.wav")), path]
        return PerformanceAnalysis(_performance_figure(named), _performance_rows(named), files)

    def listen_start(self, session: Session | None, slot: int, now: float | None = None) -> Gate:
        """A candidate's player started: remember when (server clock)."""
        with self._lock:
            current = session.round if session is not None else None
            if current is not None and not current.submitted and 0 <= slot < len(current.shown):
                current.playing[current.shown_order[slot]] = (
                    time.monotonic() if now is None else now
                )
            return self._gate_locked(session)

    def listen_stop(self, session: Session | None, slot: int, now: float | None = None) -> Gate:
        """A candidate's player paused or ended: add the time it played and log the event.

        Idempotent: a pause without a preceding play (the player fires both "pause" and "stop"
        at the end of a clip) adds nothing.
        """
        with self._lock:
            current = session.round if session is not None else None
            if current is None or not 0 <= slot < len(current.shown):
                return self._gate_locked(session)
            index = current.shown_order[slot]
            began = current.playing.pop(index, None)
            if began is None:
                return self._gate_locked(session)
            seconds = max(0.0, (time.monotonic() if now is None else now) - began)
            current.listened[index] += seconds
            session_id, fp = session.session_id, current.fingerprint  # type: ignore[union-attr]
            chunk_id = current.candidates[index].chunk_id
        # Outside the lock: an fsync'd write takes milliseconds and must not block other players.
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
            return Gate(False, "Ranking submitted. Perform another input for a new round.")
        parts, missing = [], 0
        for slot, index in enumerate(current.shown_order):
            need = current.required_seconds(index, self.listen_seconds)
            heard = current.listened[index]
            if heard >= need:
                parts.append(f"{LETTERS[slot]} ✓")
            else:
                missing += 1
                parts.append(f"{LETTERS[slot]} {heard:.1f}/{need:.1f} s")
        if missing:
            return Gate(
                False,
                f"Listened: {' · '.join(parts)}. Play each candidate for at least "
                f"{self.listen_seconds:g} s (pausing or reaching its end counts) to unlock "
                "Submit.",
            )
        return Gate(True, f"Listened: {' · '.join(parts)}. Rank the candidates and submit.")

    def submit(self, session: Session | None, ranks: Sequence[int | str | None]) -> Reveal:
        """Store the listener's ranking (``ranks[slot]`` = rank given to the shown candidate at
        that slot, 1 = best) and reveal the scores.

        Raises:
            EnsembleError: nothing to rank, listening not finished, or ranks not a permutation.
        """
        with self._lock:
            current = session.round if session is not None else None
            if current is None or session is None:
                raise EnsembleError("There is nothing to rank yet; perform an input first.")
            gate = self._gate_locked(session)
            if not current.submitted and not gate.ready:
                raise EnsembleError(
                    "Listen to every candidate first: " + gate.text.split(". ")[0] + "."
                )
            k = len(current.shown_order)
            ranking = _ranking_from_slots(ranks, current.shown_order)
            judgement = current.judgement or Judgement(
                session_id=session.session_id,
                input_fingerprint=current.fingerprint,
                candidates=current.candidates,
                shown_order=list(current.shown_order),
                listen_seconds=[round(s, 3) for s in current.listened],
                ranking=ranking,
                instruments=list(current.instruments),
                settings=current.settings,
                model_version=self.model_version,
                index_version=self.index_version,
                app_version=self.app_version,
                uid=current.uid,
            )
            if current.judgement is not None and judgement.ranking != ranking:
                raise EnsembleError("This round was already submitted; perform a new input.")
        # add_judgement is idempotent on the uid, so a double click stores one row.
        self.store.add_judgement(judgement)
        with self._lock:
            current.judgement = judgement
        log.info("judgement %s stored (%d candidates)", judgement.id, k)
        return _reveal(judgement, current)

    def end_session(self, session: Session | None) -> None:
        """Delete a session's rendered files (the page was closed or the state expired)."""
        if session is None:
            return
        shutil.rmtree(self.work_dir / session.session_id, ignore_errors=True)

    # -- helpers -------------------------------------------------------------------------------

    def _load(self, path: str | Path | None, trim: bool, messages: list[str]) -> np.ndarray:
        if path is None or str(path).strip() == "":
            raise EnsembleError("Upload or record some audio, or pick an example, first.")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ClippingWarning)
            audio = load_audio(path, max_seconds=APP_MAX_SECONDS, trim=trim)
        messages += [str(w.message) for w in caught if issubclass(w.category, ClippingWarning)]
        if trim and len(audio) >= int(APP_MAX_SECONDS * SAMPLE_RATE):
            messages.append(f"Only the first {APP_MAX_SECONDS:g} s were used.")
        return audio

    def _validate(self, options: RoundOptions) -> RoundOptions:
        chosen = [n for n in options.instruments if n]
        if not chosen:
            raise EnsembleError(f"Choose at least one instrument: {', '.join(self.instruments)}.")
        unknown = [n for n in chosen if n not in self.kinds]
        if unknown:
            raise EnsembleError(
                f"Unknown instrument(s) {', '.join(unknown)}; choose from "
                f"{', '.join(self.instruments)}."
            )
        leader = options.leader if options.leader in chosen else None
        if leader is None:
            leader = self.leader_choices(chosen)[1]
            if leader is None:
                raise EnsembleError(
                    "Add a pitched instrument to lead: it plays your melody (drums cannot)."
                )
        weights = parse_weights({k: float(v) for k, v in options.weights.items()})
        check_continue(options.top_k, options.hops, weights)
        return RoundOptions(
            instruments=chosen,
            leader=leader,
            top_k=int(options.top_k),
            hops=int(options.hops),
            weights=weights,
            perform=options.perform,
            trim=options.trim,
        )

    def _continuations(
        self,
        audio: np.ndarray,
        options: RoundOptions,
        messages: list[str],
        features: FeatureFrame,
    ) -> list[Continuation]:
        """Top-K continuations with raw audio; problems become messages, since the performance
        is still worth hearing without them."""
        if self.index is None:
            messages.append(f"No continuations: {self.index_note}")
            return []
        try:
            found = continue_audio(
                audio,
                self.index,
                top_k=options.top_k,
                hops=options.hops,
                weights=options.weights,
                embedder=self.embedder,
                render=True,
                features=features,
            )
        except EnsembleError as exc:
            messages.append(f"No continuations: {exc}")
            return []
        messages += found[0].notes if found else ["The index has no continuation for this input."]
        return found

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
        # Gradio has copied the previous round's files into its cache when it sent them.
        if session.round_folder is not None:
            shutil.rmtree(session.round_folder, ignore_errors=True)

    def _prepare_round(
        self,
        round_uid: str,
        audio: np.ndarray,
        continuations: list[Continuation],
        performance: Performance,
        options: RoundOptions,
        folder: Path,
        report: Progress,
    ) -> tuple[Round, list[ShownCandidate]]:
        k = len(continuations)
        shown_order = list(range(k))
        random.Random(uuid.uuid4().int).shuffle(shown_order)
        letter_of = {index: LETTERS[slot] for slot, index in enumerate(shown_order)}
        tail_s = min(TAIL_SECONDS, len(audio) / SAMPLE_RATE)
        chunk_s = self.index.config.chunk_seconds if self.index is not None else 0.0

        def prepare(index: int) -> tuple[ShownCandidate, SongMetrics]:
            """Render one candidate through the ensemble, measure it and draw it."""
            item = continuations[index]
            raw = item.audio if item.audio is not None else np.zeros(0, np.float32)
            sound = self.ensemble.perform(
                raw, options.instruments, performance.leader, options.perform
            ).mix
            metrics = song_metrics(downmix(sound))
            letter = letter_of[index]
            seams = [tail_s + h * chunk_s for h in range(len(item.chunk_ids))]
            # Neutral names: the file name and the plot must not give the model rank away.
            shown = ShownCandidate(
                letter=letter,
                audio_path=write_audio(folder / f"candidate-{letter}.wav", sound),
                figure=_candidate_figure(metrics, f"Candidate {letter}", seams),
                duration_s=len(sound) / SAMPLE_RATE,
            )
            return shown, metrics

        # Decoders run batch-1 GRUs on one intra-op thread (see ensemble.threads) and release
        # the GIL, so two candidates render at once on two cores.
        report(0.35, f"Rendering {k} candidates through the ensemble")
        with ThreadPoolExecutor(RENDER_WORKERS, thread_name_prefix="render") as pool:
            futures = {pool.submit(prepare, index): index for index in range(k)}
            prepared: dict[int, tuple[ShownCandidate, SongMetrics]] = {}
            for future in as_completed(futures):
                prepared[futures[future]] = future.result()
                report(0.35 + 0.6 * len(prepared) / k,
                       f"Rendered, measured and drew {len(prepared)} of {k} candidates")

        perform_settings = asdict(options.perform)
        perform_settings["mute"] = list(perform_settings["mute"])
        new_round = Round(
            uid=round_uid,
            fingerprint=fingerprint(audio),
            candidates=[Candidate.from_dict(item.to_json()) for item in continuations],
            shown_order=shown_order,
            durations=[prepared[i][0].duration_s for i in range(k)],
            listened=[0.0] * k,
            instruments=options.instruments,
            settings={
                "top_k": options.top_k,
                "hops": options.hops,
                "weights": options.weights,
                "weights_source": self._weights_source(options.weights),
                "leader": performance.leader,
                "perform": perform_settings,
                "listen_seconds": self.listen_seconds,
                "input_seconds": round(len(audio) / SAMPLE_RATE, 3),
                "trim": options.trim,
            },
            metrics=[prepared[i][1].summary() for i in range(k)],
            shown=[letter_of[i] for i in shown_order],
        )
        return new_round, [prepared[i][0] for i in shown_order]


# -- per-session state -------------------------------------------------------------------------


@dataclass
class Round:
    """One blind listening test; candidate indices are positions in the model's order."""

    uid: str  # also the judgement uid, so a resubmitted form is stored once
    fingerprint: str
    candidates: list[Candidate]
    shown_order: list[int]  # slot -> candidate index
    durations: list[float]  # seconds, per candidate index
    listened: list[float]  # seconds played, per candidate index
    instruments: list[str]
    settings: dict[str, Any]
    metrics: list[dict[str, float | None]]  # song-metric summary per candidate index
    shown: list[str]  # letters, per slot
    playing: dict[int, float] = field(default_factory=dict)  # candidate index -> play start
    judgement: Judgement | None = None

    @property
    def submitted(self) -> bool:
        return self.judgement is not None

    def required_seconds(self, index: int, listen_seconds: float) -> float:
        # A clip shorter than twice the requirement only has to be heard halfway.
        return min(listen_seconds, 0.5 * self.durations[index])


@dataclass
class Session:
    """Everything of one listener (a browser tab): their id and their current round."""

    session_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    round: Round | None = None
    round_folder: Path | None = None
    performance: Performance | None = None  # until `analyse_performance` has measured it


# -- what handlers return ----------------------------------------------------------------------


@dataclass
class Gate:
    ready: bool  # every candidate heard long enough: Submit can unlock
    text: str


@dataclass
class ShownCandidate:
    letter: str
    audio_path: Path
    figure: go.Figure
    duration_s: float


@dataclass
class RoundResult:
    messages: list[str]
    mix_path: Path
    files: list[Path]  # mix and stems
    candidates: list[ShownCandidate]  # in shown order
    gate: Gate
    seconds: float  # wall time of the round


@dataclass
class PerformanceAnalysis:
    figure: go.Figure
    table: list[list[Any]]  # PERFORMANCE_COLUMNS, one row per signal
    files: list[Path]  # mix, stems, metrics.json


@dataclass
class Reveal:
    judgement_id: int
    text: str  # Markdown: agreement and disagreements
    rows: list[list[Any]]  # REVEAL_COLUMNS, in shown order


# -- pure helpers ------------------------------------------------------------------------------


def _ranking_from_slots(ranks: Sequence[int | str | None], shown_order: list[int]) -> list[int]:
    """Slot ranks (1 = best) → candidate indices best first; readable errors otherwise."""
    k = len(shown_order)
    values: list[int] = []
    for slot, rank in enumerate(list(ranks)[:k]):
        try:
            values.append(int(rank))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise EnsembleError(f"Give Candidate {LETTERS[slot]} a rank from 1 to {k}.") from None
    if len(values) < k:
        raise EnsembleError(f"Rank all {k} candidates, from 1 (best) to {k}.")
    out_of_range = [LETTERS[s] for s, r in enumerate(values) if not 1 <= r <= k]
    if out_of_range:
        raise EnsembleError(f"Ranks go from 1 to {k}; check Candidate {', '.join(out_of_range)}.")
    used = {r: [LETTERS[s] for s, v in enumerate(values) if v == r] for r in set(values)}
    twice = [f"rank {r} ({' and '.join(slots)})" for r, slots in sorted(used.items())
             if len(slots) > 1]
    if twice:
        missing = [str(r) for r in range(1, k + 1) if r not in used]
        raise EnsembleError(
            f"Give each candidate a different rank: {'; '.join(twice)} given twice, "
            f"{', '.join(missing)} not at all."
        )
    return [shown_order[values.index(r)] for r in range(1, k + 1)]


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _reveal(judgement: Judgement, current: Round) -> Reveal:
    k = len(judgement.candidates)
    letter_of = {index: current.shown[slot] for slot, index in enumerate(current.shown_order)}
    human_rank = {index: pos + 1 for pos, index in enumerate(judgement.ranking or [])}
    rows = []
    for index in current.shown_order:
        c = judgement.candidates[index]
        m = current.metrics[index]
        s = c.scores
        rows.append([
            letter_of[index], human_rank.get(index), c.rank, _r(s.get("composite")),
            _r(s.get("relevance")), _r(s.get("coherence")), _r(s.get("pitch_coherence")),
            _r(s.get("chroma_coherence")), _r(s.get("loudness_coherence")), c.source,
            round(c.start_s, 2), round(judgement.listen_seconds[index], 1),
            m.get("melodic_complexity"), m.get("dynamic_range_db"), m.get("mean_rms"),
        ])
    model_utility = -np.array([c.rank for c in judgement.candidates], float)
    tau = kendall_tau(human_utility(judgement), model_utility) if k > 1 else float("nan")
    found = disagreements(judgement)
    lines = [f"**Saved** as rating #{judgement.id}. Scores and model ranks are now revealed."]
    if np.isfinite(tau):
        lines.append(f"Agreement between your order and the score's: Kendall τ = {tau:+.2f} "
                     "(+1 same order, −1 reversed).")
    if found:
        lines.append("Where you and the score disagreed:")
        lines += [
            f"- Candidate {letter_of[d.candidate]}: you ranked it {_ordinal(d.human_rank)}, the "
            f"score {_ordinal(d.model_rank)} ("
            + ("you liked it more" if d.shift > 0 else "you liked it less") + ")."
            for d in found
        ]
    else:
        lines.append("You and the score agree on every candidate.")
    return Reveal(judgement_id=int(judgement.id or 0), text="\n".join(lines), rows=rows)


def _r(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(float(x), digits)


def _performance_rows(named: dict[str, SongMetrics]) -> list[list[Any]]:
    keys = ["duration_s", "peak", "average_energy", "dynamic_range_db", "melodic_complexity",
            "voiced_share", "median_f0_hz"]
    return [[name, *(m.summary()[k] for k in keys)] for name, m in named.items()]


def _performance_figure(named: dict[str, SongMetrics]) -> go.Figure:
    from ensemble.plots import song_figure

    return song_figure(named, "Input, mix and stems")


def _candidate_figure(metrics: SongMetrics, title: str, seams: list[float]) -> go.Figure:
    from ensemble.plots import song_figure

    figure = song_figure({title: metrics}, title)
    for i, seam in enumerate(seams):
        figure.add_vline(x=seam, line={"dash": "dot", "color": "#555", "width": 1})
        # At the bottom: the subplot titles sit at the top centre, where the first seam falls.
        figure.add_annotation(
            x=seam, y=0.0, yref="paper", yanchor="bottom", showarrow=False,
            text="your input │ continuation" if i == 0 else "│ seam",
            font={"size": 11, "color": "#444"}, bgcolor="rgba(255,255,255,0.8)",
        )
    figure.update_layout(height=CANDIDATE_PLOT_HEIGHT, showlegend=False)
    return figure


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


def _open_index(path: Path | None) -> tuple[RagIndex | None, str]:
    if path is None:
        return None, "No continuation index is configured."
    try:
        index = open_index(path)
    except EnsembleError as exc:
        log.warning("no RAG index: %s", exc)
        return None, str(exc)
    return index, f"Continuation index: {len(index)} chunks from {len(index.files)} files."


def _file_stamp(path: Path | None) -> tuple[int, int] | None:
    """(mtime in ns, size) of ``path``, or None when it does not exist."""
    try:
        stat = Path(path).stat() if path is not None else None
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size) if stat is not None else None


def _initial_weights(path: Path | None) -> tuple[dict[str, float], bool, str]:
    """Learned weights when a `ratings fit` file exists, else the library defaults; returns
    (weights, learned, a sentence for the page)."""
    from ensemble.ratings import load_weights

    if path is None or not Path(path).is_file():
        return (dict(DEFAULT_WEIGHTS), False,
                "Candidates are ranked with the default score weights.")
    try:
        weights = parse_weights(load_weights(path))
    except EnsembleError as exc:
        log.warning("ignoring weights file: %s", exc)
        return dict(DEFAULT_WEIGHTS), False, f"Default score weights ({exc})"
    return (weights, True,
            f"Candidates are ranked with weights learned from ratings ({Path(path).name}).")


def _tree_digest(root: Path, names: Sequence[str]) -> str:
    """Short sha256 over the named files under ``root`` (relative path + content)."""
    digest = hashlib.sha256()
    for path in sorted(p for name in names for p in Path(root).rglob(name)):
        digest.update(str(path.relative_to(root)).encode())
        with path.open("rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:12]


def _app_version() -> str:
    """Package version plus the git commit when the app runs from a checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
            text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__}+{commit}" if commit else __version__
