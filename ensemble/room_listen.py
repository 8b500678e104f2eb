"""The listen gate's handler side: the page's player reports applied to a session's round (see
`ensemble.room_gate` for how they are checked), each finished play recorded, and the gate's state
as the page shows it."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from ensemble.errors import EnsembleError
from ensemble.ratings import RatingsStore
from ensemble.room_gate import parse_reports
from ensemble.room_state import Session
from ensemble.room_verdict import LETTERS

log = logging.getLogger(__name__)


@dataclass
class Gate:
    ready: bool  # every candidate heard long enough: Submit can unlock
    text: str


class ListenGate:
    """Counts what each listener heard of their round's candidates; Submit unlocks when every
    one was heard for ``listen_seconds`` (half of a shorter clip)."""

    def __init__(self, store: RatingsStore, listen_seconds: float, lock: threading.Lock) -> None:
        self.store = store
        self.listen_seconds = listen_seconds
        self._lock = lock  # the room's lock over in-place session updates

    def listen(self, session: Session | None, reports: Any, now: float | None = None) -> Gate:
        """Apply the page's player reports and return the gate.

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
        return self.state(session)

    def state(self, session: Session | None) -> Gate:
        with self._lock:
            return self.state_locked(session)

    def state_locked(self, session: Session | None) -> Gate:
        """The gate, for a caller already holding the room's lock."""
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
