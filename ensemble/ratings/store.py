"""Judgements, listen events and kept candidates in one SQLite file (see `ratings.database`
for why the connections and transactions are set up as they are)."""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ensemble.errors import EnsembleError
from ensemble.ratings.database import Database
from ensemble.ratings.judgement import Candidate, Judgement
from ensemble.ratings.schema import check_schema, migrate
from ensemble.ratings.stats import ratings_stats

if TYPE_CHECKING:
    from ensemble.ratings.sync import HubSync

log = logging.getLogger(__name__)

_JSON_COLUMNS = ("candidates", "shown_order", "listen_seconds", "ranking", "ratings",
                 "instruments", "settings", "ties", "flags")
_COLUMNS = ("id", "uid", "created_at", "session_id", "input_fingerprint", *_JSON_COLUMNS[:5],
            "best", *_JSON_COLUMNS[5:7], "model_version", "index_version", "app_version",
            "verdict", "ties", "reason", "flags", "local_id")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class RatingsStore:
    """Judgements and listen events in one SQLite file.

    `create=False` refuses a missing file (for the CLI, where a typo must not make an empty DB).
    `readonly=True` (implies create=False) only reads: it works on a read-only copy or folder,
    and never switches the journal or migrates the schema.
    `hub`, when given, receives every stored judgement for the Hugging Face dataset mirror.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        create: bool = True,
        readonly: bool = False,
        hub: HubSync | None = None,
    ):
        self.path = Path(path)
        self.hub = hub
        self.readonly = readonly
        create = create and not readonly
        if not create and not self.path.is_file():
            raise EnsembleError(
                f"There is no ratings database at {self.path}; check the --db path "
                "(the app creates it when the first rating is submitted)."
            )
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = Database(self.path, readonly=readonly)
        try:
            check_schema(self._db) if readonly else migrate(self._db, create=create)
        except sqlite3.DatabaseError as exc:
            raise EnsembleError(
                f"{self.path} cannot be opened as a ratings database ({exc})."
            ) from exc

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        self._db.close()

    def sqlite_settings(self) -> dict[str, Any]:
        """The durability settings in force, as SQLite reports them."""
        return self._db.settings()

    # -- judgements --------------------------------------------------------------------------

    def add_judgement(self, judgement: Judgement) -> int:
        """Validate and durably store a judgement; return its id (the same id on a resubmit).

        Sets `judgement.id` and `judgement.created_at`. The row is committed and fsynced before
        this returns.
        """
        judgement.validate()
        if judgement.created_at is None:
            judgement.created_at = utc_now()
        row = _to_row(judgement)
        with self._db.write() as conn:  # holds the write lock: the check and insert are atomic
            existing = conn.execute(
                "SELECT id, created_at FROM judgements WHERE uid = ?", (judgement.uid,)
            ).fetchone()
            if existing:
                judgement.id, judgement.created_at = existing
                return judgement.id
            cursor = conn.execute(
                f"INSERT INTO judgements ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                tuple(row.values()),
            )
            judgement.id = int(cursor.lastrowid)
        if self.hub is not None:
            self._mirror(judgement)
        return judgement.id

    def _mirror(self, judgement: Judgement) -> None:
        # The SQLite row is the source of truth: a failing mirror must not lose or fail a submit.
        try:
            self.hub.append(judgement)
        except OSError as exc:
            log.warning("could not stage judgement %s for the Hub mirror: %s", judgement.id, exc)

    def judgements(self, session_id: str | None = None) -> list[Judgement]:
        """All judgements (or one session's), oldest first."""
        query = f"SELECT {', '.join(_COLUMNS)} FROM judgements"
        params: tuple[Any, ...] = ()
        if session_id is not None:
            query += " WHERE session_id = ?"
            params = (session_id,)
        with self._db.read() as conn:
            rows = conn.execute(query + " ORDER BY id", params).fetchall()
        return [_from_row(dict(zip(_COLUMNS, r, strict=True))) for r in rows]

    def count(self) -> int:
        with self._db.read() as conn:
            return conn.execute("SELECT COUNT(*) FROM judgements").fetchone()[0]

    def listener_history(self, session_id: str, local_id: str = "", since: str = ""
                         ) -> tuple[set[str], set[tuple[str, ...]], int]:
        """What one listener (this session, or any session of the same browser) has submitted:
        the chunk ids revealed to them, the (input, chunk ids) sets they judged, and how many
        judgements since ``since`` (UTC ISO time) — for the heard-before, duplicate and rate
        checks."""
        query = ("SELECT input_fingerprint, candidates, created_at FROM judgements "
                 "WHERE session_id = ? OR (local_id != '' AND local_id = ?)")
        with self._db.read() as conn:
            rows = conn.execute(query, (session_id, local_id)).fetchall()
        revealed: set[str] = set()
        judged: set[tuple[str, ...]] = set()
        recent = 0
        for fingerprint, candidates, created_at in rows:
            chunks = sorted(c["chunk_id"] for c in json.loads(candidates))
            revealed.update(chunks)
            judged.add((fingerprint, *chunks))
            recent += created_at >= since
        return revealed, judged, recent

    def export(self, fmt: str, out: str | Path | TextIO) -> int:
        """Write all judgements as `csv` or `jsonl` to a path or an open text stream."""
        from ensemble.ratings.export import write_export

        return write_export(self.judgements(), fmt, out)

    # -- listen events -----------------------------------------------------------------------

    def add_listen_event(
        self, session_id: str, chunk_id: str, seconds: float, *, input_fingerprint: str = ""
    ) -> int:
        """Record that a candidate was played for `seconds` (one event per play)."""
        if not isinstance(session_id, str) or not session_id:
            raise EnsembleError("A listen event needs a session id.")
        if not isinstance(chunk_id, str) or not chunk_id:
            raise EnsembleError("A listen event needs the chunk id of the candidate played.")
        if not isinstance(seconds, int | float) or not 0 <= seconds < float("inf"):
            raise EnsembleError(f"Listen time must be a non-negative number (got {seconds!r}).")
        with self._db.write() as conn:
            cursor = conn.execute(
                "INSERT INTO listen_events (session_id, input_fingerprint, chunk_id, seconds, "
                "created_at) VALUES (?, ?, ?, ?, ?)",
                (session_id, input_fingerprint, chunk_id, float(seconds), utc_now()),
            )
            return int(cursor.lastrowid)

    def add_keep(self, judgement_uid: str, chunk_id: str) -> int:
        """Record that the listener kept ``chunk_id`` of the round judged as ``judgement_uid``
        for their song (a preference beside the judgement)."""
        if not judgement_uid or not chunk_id:
            raise EnsembleError("A kept candidate needs its round's judgement and its chunk id.")
        with self._db.write() as conn:
            cursor = conn.execute(
                "INSERT INTO keeps (judgement_uid, chunk_id, created_at) VALUES (?, ?, ?)",
                (judgement_uid, chunk_id, utc_now()),
            )
            return int(cursor.lastrowid)

    def keeps(self) -> dict[str, list[str]]:
        """{judgement uid: chunk ids kept from its round, oldest first}."""
        with self._db.read() as conn:
            rows = conn.execute("SELECT judgement_uid, chunk_id FROM keeps ORDER BY id").fetchall()
        out: dict[str, list[str]] = {}
        for uid, chunk in rows:
            out.setdefault(uid, []).append(chunk)
        return out

    def listened_seconds(
        self, session_id: str, input_fingerprint: str | None = None
    ) -> dict[str, float]:
        """Total seconds played per chunk id in a session (optionally for one input only).

        The app unlocks submitting when every candidate has been played long enough.
        """
        query = "SELECT chunk_id, SUM(seconds) FROM listen_events WHERE session_id = ?"
        params: tuple[str, ...] = (session_id,)
        if input_fingerprint is not None:
            query += " AND input_fingerprint = ?"
            params += (input_fingerprint,)
        with self._db.read() as conn:
            return dict(conn.execute(query + " GROUP BY chunk_id", params).fetchall())

    def stats(self) -> dict[str, Any]:
        """Counts a maintainer wants at a glance (used by `ensemble ratings stats`)."""
        return ratings_stats(self._db)


def _to_row(j: Judgement) -> dict[str, Any]:
    row = j.to_dict()
    row.pop("id")
    for name in _JSON_COLUMNS:
        if row[name] is not None:
            try:
                row[name] = json.dumps(row[name], allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise EnsembleError(
                    f"The judgement's {name} cannot be stored as JSON ({exc}); use plain "
                    "numbers, text, lists and dictionaries."
                ) from exc
    return row


def _from_row(row: dict[str, Any]) -> Judgement:
    for name in _JSON_COLUMNS:
        if row[name] is not None:
            row[name] = json.loads(row[name])
    row["candidates"] = [Candidate.from_dict(c) for c in row["candidates"]]
    return Judgement(**row)
