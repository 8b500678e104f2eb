"""One SQLite file shared by many threads and processes: connections and transactions.

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

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ensemble.errors import EnsembleError

BUSY_TIMEOUT_S = 30.0  # a writer waits this long for the lock; commits take milliseconds
_FORKED_CONNECTIONS: list[sqlite3.Connection] = []


class Database:
    """Per-thread connections to one SQLite file; `readonly` opens it with mode=ro."""

    def __init__(self, path: Path, *, readonly: bool = False):
        self.path = path
        self.readonly = readonly
        self._local = threading.local()

    def connection(self) -> sqlite3.Connection:
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
    def write(self) -> Iterator[sqlite3.Connection]:
        conn = self.connection()
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
    def read(self) -> Iterator[sqlite3.Connection]:
        # One read transaction = one consistent snapshot, even while others write.
        conn = self.connection()
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

    def enable_wal(self) -> None:
        """WAL is a property of the file, set once; switching needs a moment of exclusivity."""
        conn = self.connection()
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

    def settings(self) -> dict[str, Any]:
        """The durability settings in force, as SQLite reports them."""
        conn = self.connection()
        sync = conn.execute("PRAGMA synchronous").fetchone()[0]
        return {
            "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
            "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[sync],
            "busy_timeout_ms": conn.execute("PRAGMA busy_timeout").fetchone()[0],
        }
