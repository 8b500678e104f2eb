"""Durable SQLite store for judgements and listen events, safe for many threads and processes.

Choices, and why:
- WAL journal: readers never block the writer and vice versa, so the app can list ratings while
  listeners submit.
- synchronous=FULL: every commit fsyncs the WAL, so a submitted rating survives power loss, not
  only a crash of the app (NORMAL only survives the latter). Ratings are human-made, a few per
  minute, and cannot be regenerated, so one fsync per submit (milliseconds) is the right trade.
- One connection per thread (and per process): Gradio runs handlers on worker threads and sqlite3
  connections must not cross threads or forks. Kept open rather than opened per operation,
  because closing the last connection checkpoints the WAL: measured here, 16 ms per commit with
  a connection per operation vs 2 ms with a kept one (both with FULL fsync).
- Writes run in BEGIN IMMEDIATE: the write lock is taken up front, so concurrent writers wait on
  the busy timeout instead of failing with "database is locked" when a read upgrades to a write.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ensemble.errors import EnsembleError
from ensemble.ratings.judgement import FLAGS, GATE_FLAGS, Candidate, Judgement

if TYPE_CHECKING:
    from ensemble.ratings.sync import HubSync

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 30.0  # a writer waits this long for the lock; commits take milliseconds
_FORKED_CONNECTIONS: list[sqlite3.Connection] = []

# Migration n brings the schema from version n-1 to n. Append new ones; never edit old ones.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE judgements (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            uid TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            session_id TEXT NOT NULL,
            input_fingerprint TEXT NOT NULL,
            candidates TEXT NOT NULL,
            shown_order TEXT NOT NULL,
            listen_seconds TEXT NOT NULL,
            ranking TEXT,
            ratings TEXT,
            best INTEGER,
            instruments TEXT NOT NULL,
            settings TEXT NOT NULL,
            model_version TEXT NOT NULL,
            index_version TEXT NOT NULL,
            app_version TEXT NOT NULL
        )""",
        "CREATE INDEX judgements_session ON judgements (session_id)",
        """CREATE TABLE listen_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            session_id TEXT NOT NULL,
            input_fingerprint TEXT NOT NULL,
            chunk_id TEXT NOT NULL,
            seconds REAL NOT NULL,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX listen_events_session ON listen_events (session_id, input_fingerprint)",
    ],
    # 2: richer judgements (tie / all bad / skip, a reason) and the listen gate's flags; rows
    # from version 1 read as plain rankings with no flags.
    [
        "ALTER TABLE judgements ADD COLUMN verdict TEXT NOT NULL DEFAULT 'ranking'",
        "ALTER TABLE judgements ADD COLUMN ties TEXT",
        "ALTER TABLE judgements ADD COLUMN reason TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE judgements ADD COLUMN flags TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE judgements ADD COLUMN local_id TEXT NOT NULL DEFAULT ''",
        "CREATE INDEX judgements_local ON judgements (local_id)",
    ],
    # 3: candidates a listener kept for their song, each tied to the judgement of its round.
    [
        """CREATE TABLE keeps (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            judgement_uid TEXT NOT NULL,
            chunk_id TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX keeps_judgement ON keeps (judgement_uid)",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)

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
        self._local = threading.local()
        if not create and not self.path.is_file():
            raise EnsembleError(
                f"There is no ratings database at {self.path}; check the --db path "
                "(the app creates it when the first rating is submitted)."
            )
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._check_schema() if readonly else self._init_schema(create)
        except sqlite3.DatabaseError as exc:
            raise EnsembleError(
                f"{self.path} cannot be opened as a ratings database ({exc})."
            ) from exc

    # -- connections -------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            if conn.in_transaction:  # only after a failed COMMIT (e.g. disk full): start clean
                conn.execute("ROLLBACK")
            return conn
        if conn is not None:
            # Inherited through fork: never use or close it here (closing could disturb the
            # parent's locks); keep it referenced and open a fresh one.
            _FORKED_CONNECTIONS.append(conn)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves (see BEGIN IMMEDIATE above).
        if self.readonly:
            uri = f"{self.path.absolute().as_uri()}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        else:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            conn.execute("PRAGMA synchronous = FULL")
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise EnsembleError(
                f"The ratings database {self.path} stayed busy for {BUSY_TIMEOUT_S:.0f} s ({exc}); "
                "try again."
            ) from exc
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        # One read transaction = one consistent snapshot, even while others write.
        conn = self._connection()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None

    def _init_schema(self, create: bool) -> None:
        conn = self._connection()
        if not create and not conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone():
            # Checked before switching to WAL: a foreign database is left exactly as it was.
            raise EnsembleError(f"{self.path} is not an Ensemble ratings database.")
        self._enable_wal(conn)
        with self._write() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            version = row[0] if row else 0
            if version > SCHEMA_VERSION:
                raise EnsembleError(
                    f"{self.path} was written by a newer Ensemble (schema {version}, this one "
                    f"reads up to {SCHEMA_VERSION}); upgrade Ensemble to read it."
                )
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    conn.execute(statement)
            if version < SCHEMA_VERSION:
                conn.execute("DELETE FROM schema_version")
                conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))

    def _check_schema(self) -> None:
        """Read-only opening: the schema must already be this version's (nothing is written)."""
        with self._read() as conn:
            found = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            ).fetchone()
            row = conn.execute("SELECT version FROM schema_version").fetchone() if found else None
        if row is None:
            raise EnsembleError(f"{self.path} is not an Ensemble ratings database.")
        if row[0] != SCHEMA_VERSION:
            raise EnsembleError(
                f"{self.path} has schema {row[0]}, this Ensemble reads {SCHEMA_VERSION}; open it "
                "once with a matching Ensemble (writable) to upgrade it."
            )

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        """WAL is a property of the file, set once; switching needs a moment of exclusivity."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            try:
                conn.execute("PRAGMA journal_mode = WAL")
            except sqlite3.OperationalError as exc:
                # Several processes creating the same new file race here; the switch does not
                # always go through the busy handler, so wait for the winner ourselves.
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def sqlite_settings(self) -> dict[str, Any]:
        """The durability settings in force, as SQLite reports them."""
        conn = self._connection()
        sync = conn.execute("PRAGMA synchronous").fetchone()[0]
        return {
            "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
            "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[sync],
            "busy_timeout_ms": conn.execute("PRAGMA busy_timeout").fetchone()[0],
        }

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
        with self._write() as conn:  # holds the write lock: the check and insert are atomic
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
        with self._read() as conn:
            rows = conn.execute(query + " ORDER BY id", params).fetchall()
        return [_from_row(dict(zip(_COLUMNS, r, strict=True))) for r in rows]

    def count(self) -> int:
        with self._read() as conn:
            return conn.execute("SELECT COUNT(*) FROM judgements").fetchone()[0]

    def listener_history(self, session_id: str, local_id: str = "", since: str = ""
                         ) -> tuple[set[str], set[tuple[str, ...]], int]:
        """What one listener (this session, or any session of the same browser) has submitted:
        the chunk ids revealed to them, the (input, chunk ids) sets they judged, and how many
        judgements since ``since`` (UTC ISO time) — for the heard-before, duplicate and rate
        checks."""
        query = ("SELECT input_fingerprint, candidates, created_at FROM judgements "
                 "WHERE session_id = ? OR (local_id != '' AND local_id = ?)")
        with self._read() as conn:
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
        with self._write() as conn:
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
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO keeps (judgement_uid, chunk_id, created_at) VALUES (?, ?, ?)",
                (judgement_uid, chunk_id, utc_now()),
            )
            return int(cursor.lastrowid)

    def keeps(self) -> dict[str, list[str]]:
        """{judgement uid: chunk ids kept from its round, oldest first}."""
        with self._read() as conn:
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
        with self._read() as conn:
            return dict(conn.execute(query + " GROUP BY chunk_id", params).fetchall())

    # -- summary -----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counts a maintainer wants at a glance (used by `ensemble ratings stats`)."""
        with self._read() as conn:
            n, sessions, first, last, n_ranked, n_rated, n_best = conn.execute(
                "SELECT COUNT(*), COUNT(DISTINCT session_id), MIN(created_at), MAX(created_at), "
                "COUNT(ranking), COUNT(ratings), "
                "SUM(ranking IS NULL AND ratings IS NULL) FROM judgements"
            ).fetchone()
            events, listened = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(seconds), 0) FROM listen_events"
            ).fetchone()
            keeps = conn.execute("SELECT COUNT(*) FROM keeps").fetchone()[0]
            flags = conn.execute("SELECT flags FROM judgements WHERE flags != '[]'").fetchall()
            verdicts = dict(conn.execute(
                "SELECT verdict, COUNT(*) FROM judgements GROUP BY verdict").fetchall())
            per_listener = [c for (c,) in conn.execute(
                "SELECT COUNT(*) FROM judgements GROUP BY CASE WHEN local_id != '' THEN local_id "
                "ELSE session_id END").fetchall()]
        by_flag = {name: 0 for name in FLAGS}
        flagged = gate_failed = 0
        for (text,) in flags:
            found = json.loads(text)
            flagged += 1
            gate_failed += any(f in GATE_FLAGS for f in found)
            for name in found:
                by_flag[name] = by_flag.get(name, 0) + 1
        return {
            "judgements": n, "sessions": sessions, "first": first, "last": last,
            "with_ranking": n_ranked, "with_ratings": n_rated, "best_only": n_best or 0,
            "listen_events": events, "listened_seconds": float(listened), "keeps": keeps,
            "verdicts": verdicts, "flagged": flagged, "gate_failed": gate_failed,
            "by_flag": by_flag, "listeners": len(per_listener),
            "max_per_listener": max(per_listener, default=0),
        }


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
