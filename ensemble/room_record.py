"""The submission recorder: a listener's verdict on their round, checked against the listen gate,
flagged when the listening checks failed, committed to SQLite, then revealed."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

from ensemble.errors import EnsembleError
from ensemble.ratings import Judgement, RatingsStore
from ensemble.room_config import RoomConfig
from ensemble.room_listen import ListenGate
from ensemble.room_media import MediaRegistry
from ensemble.room_setup import Versions
from ensemble.room_state import Round, Session
from ensemble.room_verdict import Reveal, Submission, read_submission, reveal

log = logging.getLogger(__name__)


class Recorder:
    """Stores judgements: once per round, before anything is revealed."""

    def __init__(self, store: RatingsStore, gate: ListenGate, media: MediaRegistry,
                 versions: Versions, config: RoomConfig, lock: threading.Lock) -> None:
        self.store = store
        self.gate = gate
        self.media = media
        self.versions = versions
        self.config = config  # its rate limit is read at each submit
        self._lock = lock  # the room's lock over in-place session updates

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
            gate = self.gate.state_locked(session)
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
            model_version=self.versions.model,
            index_version=self.versions.index,
            app_version=self.versions.app,
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
