"""The round renderer: an input performed by the ensemble, its Top-K continuations retrieved
(leaving out what this listener has had revealed) and rendered by the same lineup, measured,
drawn and written under random names (`ensemble.room_files.random_name`), ready to be shown
blind in a shuffled order under neutral letters."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ensemble.audio import fingerprint, write_audio
from ensemble.config import SAMPLE_RATE
from ensemble.errors import EnsembleError
from ensemble.features import FeatureFrame
from ensemble.metrics import SongMetrics, metrics_json, song_metrics
from ensemble.mix import downmix
from ensemble.perform import Performance
from ensemble.rag import Continuation, Lineup, Retrieval, render_continuations, retrieve
from ensemble.ratings import Candidate
from ensemble.room_config import MAX_CANDIDATES, RoundOptions
from ensemble.room_figures import (
    candidate_figure,
    overview_figure,
    performance_figure,
    performance_rows,
)
from ensemble.room_files import random_name
from ensemble.room_gate import ListenLedger
from ensemble.room_media import MediaRegistry
from ensemble.room_setup import RoomResources
from ensemble.room_state import (
    Input,
    PerformanceAnalysis,
    Round,
    Session,
    ShownCandidate,
    ShownRound,
)
from ensemble.room_verdict import LETTERS

Progress = Callable[[float, str], None]


@dataclass
class Rendered:
    """One candidate as the listener gets it (indexed like the continuations)."""

    audio_path: Path
    duration_s: float
    metrics: SongMetrics


@dataclass
class MadeRound:
    performance: Performance
    files: list[Path]  # mix, stems, arrangement MIDI
    messages: list[str]
    round: Round | None  # None when there are no continuations
    shown: ShownRound | None


class RoundRenderer:
    """Makes rounds with the room's models, index and weights."""

    def __init__(self, resources: RoomResources, media: MediaRegistry, listen_seconds: float,
                 lock: threading.Lock) -> None:
        self.resources = resources
        self.media = media
        self.listen_seconds = listen_seconds
        self._lock = lock  # the room's lock over in-place session updates

    def make(self, session: Session, given: Input, options: RoundOptions, folder: Path,
             report: Progress) -> MadeRound:
        """Perform ``given`` with checked ``options`` into ``folder`` and prepare its round."""
        messages = list(given.notes)
        report(0.1, "Performing the ensemble")
        performance = self.resources.ensemble.perform(
            given.audio, options.instruments, options.leader, options.settings
        )
        messages += performance.messages
        files = performance.write(folder, name=random_name, midi=True)
        report(0.3, "Searching the index for continuations")
        found = self._retrieve(given.audio, options, messages, performance.features, session)
        if found is None:
            return MadeRound(performance, files, messages, None, None)
        lineup = Lineup(self.resources.ensemble, options.instruments, performance.leader,
                        options.settings)  # fmt: skip
        new_round, shown = self._blind_round(session, given.audio, found, lineup, options,
                                             folder, report)  # fmt: skip
        return MadeRound(performance, files, messages, new_round, shown)

    def _retrieve(self, audio: np.ndarray, options: RoundOptions, messages: list[str],
                  features: FeatureFrame, session: Session) -> Retrieval | None:
        """Top-K continuations, leaving out any this listener has had revealed (blind across
        rounds); problems become messages, since the performance is still worth hearing
        without them."""
        index = self.resources.index
        if index is None:
            messages.append(f"No continuations: {self.resources.index_note}")
            return None
        revealed = self.resources.store.listener_history(session.session_id, session.local_id)[0]
        extra = min(len(revealed), 2 * MAX_CANDIDATES)  # room to replace what was heard
        try:
            found = retrieve(audio, index, top_k=options.top_k + extra, hops=options.hops,
                             weights=options.weights, embedder=self.resources.embedder,
                             features=features)  # fmt: skip
        except EnsembleError as exc:
            messages.append(f"No continuations: {exc}")
            return None
        if not found.continuations:
            messages.append("The index has no continuation for this input.")
            return None
        messages += found.notes
        fresh, heard = [], []
        for item in found.continuations:
            (heard if "+".join(item.chunk_ids) in revealed else fresh).append(item)
        if len(fresh) < options.top_k and heard:
            messages.append("Some candidates were revealed to you in an earlier round; this "
                            "round's rating is kept aside as heard before.")
        kept = sorted((fresh + heard)[: options.top_k], key=lambda c: c.rank)
        # The model's order among what is shown.
        found.continuations = [replace(c, rank=rank) for rank, c in enumerate(kept, start=1)]
        return found

    def _blind_round(self, session: Session, audio: np.ndarray, found: Retrieval, lineup: Lineup,
                     options: RoundOptions, folder: Path, report: Progress
                     ) -> tuple[Round, ShownRound]:  # fmt: skip
        k = len(found.continuations)
        shown_order = list(range(k))
        random.Random(uuid.uuid4().int).shuffle(shown_order)
        letters = [LETTERS[shown_order.index(i)] for i in range(k)]  # per candidate index
        continuations, rendered = self._render(found, lineup, folder, report)
        tokens = [self.media.add(r.audio_path, session.session_id) for r in rendered]
        chunk_s = found.index.config.chunk_seconds
        seam_s = continuations[0].seam_s
        shown = ShownRound(
            candidates=[
                ShownCandidate(
                    letter=letters[i],
                    url=self.media.url(tokens[i]),
                    figure=candidate_figure(
                        rendered[i].metrics, f"Candidate {letters[i]}",
                        [seam_s + h * chunk_s for h in range(len(continuations[i].chunk_ids))]),
                    duration_s=rendered[i].duration_s,
                    need_s=min(self.listen_seconds, 0.5 * rendered[i].duration_s),
                )
                for i in shown_order
            ],
            overview=overview_figure(
                {f"Candidate {letters[i]}": rendered[i].metrics for i in shown_order}, seam_s),
        )
        new_round = Round(
            uid=folder.name,  # the round's folder is named by its uid
            fingerprint=fingerprint(audio),
            candidates=[Candidate.from_dict(item.to_json()) for item in continuations],
            shown_order=shown_order,
            ledger=ListenLedger([r.duration_s for r in rendered]),
            tokens=tokens,
            instruments=options.instruments,
            settings=self._settings(options, str(lineup.leader), audio),
            metrics=[r.metrics.summary() for r in rendered],
            shown=[letters[i] for i in shown_order],
            continuations=[replace(c, mix=None) for c in continuations],  # raw audio, to keep
        )
        return new_round, shown

    def _render(self, found: Retrieval, lineup: Lineup, folder: Path, report: Progress
                ) -> tuple[list[Continuation], list[Rendered]]:  # fmt: skip
        """Every continuation performed by ``lineup``, written and measured (two at a time)."""
        k = len(found.continuations)
        done: dict[int, Rendered] = {}

        def finish(i: int, item: Continuation) -> None:
            sound = item.mix
            path = write_audio(folder / random_name("candidate"), sound)
            done[i] = Rendered(path, len(sound) / SAMPLE_RATE, song_metrics(downmix(sound)))

        report(0.35, f"Rendering {k} candidates through the ensemble")
        continuations = render_continuations(
            found, lineup, finish=finish,
            progress=lambda n, total: report(0.35 + 0.6 * n / total,
                                             f"Rendered and measured {n} of {total} candidates"),
        )  # fmt: skip
        return continuations, [done[i] for i in range(k)]

    def _settings(self, options: RoundOptions, leader: str, audio: np.ndarray) -> dict[str, Any]:
        """What a judgement records about how its round was made."""
        perform_settings = asdict(options.settings)
        perform_settings["mute"] = list(perform_settings["mute"])
        return {
            "top_k": options.top_k,
            "hops": options.hops,
            "weights": options.weights,
            "weights_source": self.resources.weights.source(options.weights),
            "leader": leader,
            "perform": perform_settings,
            "listen_seconds": self.listen_seconds,
            "input_seconds": round(len(audio) / SAMPLE_RATE, 3),
            "trim": options.trim,
        }

    def analyse(self, session: Session | None, progress: Progress | None = None
                ) -> PerformanceAnalysis | None:  # fmt: skip
        """Song metrics of the input, the mix and each stem, as a figure, a table and
        metrics.json (None when there is no performance to analyse).

        A separate step from making the round: five or more pYIN passes would otherwise double
        the time before the listener can start comparing candidates.
        """
        with self._lock:
            performance = session.performance if session is not None else None
            folder = session.round_folder if session is not None else None
        if performance is None or folder is None:
            return None
        (progress or (lambda _fraction, _text: None))(0.1, "Measuring melody and dynamics")
        named = performance.metrics()
        try:
            (path,) = performance.write(folder, name=random_name, audio=False,
                                        metrics=metrics_json(named))  # fmt: skip
        except OSError:  # a newer round replaced this one's folder meanwhile
            return None
        with self._lock:
            if session is not None and session.performance is performance:
                session.performance = None  # the arrays are not needed any more
        files = [*sorted(folder.glob("mix-*.wav")), *sorted((folder / "stems").glob("*.wav")),
                 *sorted(folder.glob("arrangement-*.mid")), path]
        return PerformanceAnalysis(performance_figure(named), performance_rows(named), files)
