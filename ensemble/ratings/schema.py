"""The ratings database's schema: numbered migrations, applied on opening or checked read-only."""

from __future__ import annotations

from ensemble.errors import EnsembleError
from ensemble.ratings.database import Database

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

_HAS_VERSION_TABLE = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"


def migrate(db: Database, *, create: bool) -> None:
    """Bring the file to SCHEMA_VERSION (creating it when `create`), in WAL mode."""
    if not create and not db.connection().execute(_HAS_VERSION_TABLE).fetchone():
        # Checked before switching to WAL: a foreign database is left exactly as it was.
        raise EnsembleError(f"{db.path} is not an Ensemble ratings database.")
    db.enable_wal()
    with db.write() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        version = row[0] if row else 0
        if version > SCHEMA_VERSION:
            raise EnsembleError(
                f"{db.path} was written by a newer Ensemble (schema {version}, this one "
                f"reads up to {SCHEMA_VERSION}); upgrade Ensemble to read it."
            )
        for statements in MIGRATIONS[version:]:
            for statement in statements:
                conn.execute(statement)
        if version < SCHEMA_VERSION:
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))


def check_schema(db: Database) -> None:
    """Read-only opening: the schema must already be this version's (nothing is written)."""
    with db.read() as conn:
        found = conn.execute(_HAS_VERSION_TABLE).fetchone()
        row = conn.execute("SELECT version FROM schema_version").fetchone() if found else None
    if row is None:
        raise EnsembleError(f"{db.path} is not an Ensemble ratings database.")
    if row[0] != SCHEMA_VERSION:
        raise EnsembleError(
            f"{db.path} has schema {row[0]}, this Ensemble reads {SCHEMA_VERSION}; open it "
            "once with a matching Ensemble (writable) to upgrade it."
        )
