"""The listening room's files on disk: bounded, and cleaned up after a crash.

Each running app owns one folder, marked with its process id. A folder whose process is gone
was left by a crash (or a kill); the next start removes it, uploads included. Inside, each
session has a folder that is removed when the session ends, or by `sweep` once it has been idle
longer than the session time limit (API clients never close a page). Files a listener gets have
random names (`random_name`), new each round, so no name gives a candidate's rank away or
recognises a clip from an earlier round.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import time
from pathlib import Path

log = logging.getLogger(__name__)

OWNER_FILE = "owner.pid"


def random_name(stem: str, suffix: str = ".wav") -> str:
    return f"{stem}-{secrets.token_hex(6)}{suffix}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _owner(folder: Path) -> int | None:
    try:
        return int((folder / OWNER_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def remove_orphans(parent: Path, prefix: str) -> list[Path]:
    """Remove ``parent/prefix*`` folders whose owning process has ended; returns them."""
    removed = []
    for folder in sorted(Path(parent).glob(f"{prefix}*")):
        pid = _owner(folder)
        if folder.is_dir() and pid is not None and pid != os.getpid() and not _alive(pid):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    if removed:
        log.info("removed %d folder(s) left by an earlier run: %s", len(removed),
                 ", ".join(p.name for p in removed))
    return removed


def claim(folder: Path) -> Path:
    """Create ``folder`` and mark it as this process's."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / OWNER_FILE).write_text(f"{os.getpid()}\n")
    return folder


def remove(folder: Path, copies: Path | None) -> None:
    """Remove ``folder`` and, under ``copies`` (where the web layer copied the files it served:
    ``copies/<hash>/<name>``), the copies of its files. Their names are random per round, so a
    name matches only copies of these files."""
    folder = Path(folder)
    if copies is not None:
        for name in {p.name for p in folder.rglob("*") if p.is_file()}:
            for copy in Path(copies).glob(f"*/{name}"):
                copy.unlink(missing_ok=True)
                with contextlib.suppress(OSError):  # not empty: other files share the hash
                    copy.parent.rmdir()
    shutil.rmtree(folder, ignore_errors=True)


def sweep(folder: Path, max_idle_s: float, copies: Path | None = None,
          now: float | None = None) -> list[str]:
    """Remove session folders under ``folder`` (and their copies) untouched for
    ``max_idle_s``; returns their names (the session ids)."""
    now = time.time() if now is None else now
    gone = []
    for session in Path(folder).iterdir():
        try:
            idle = now - max(p.stat().st_mtime for p in [session, *session.rglob("*")])
        except (OSError, ValueError):
            continue  # removed meanwhile
        if session.is_dir() and idle > max_idle_s:
            remove(session, copies)
            gone.append(session.name)
    return gone


def disk_usage(folder: Path) -> int:
    """Bytes in the files under ``folder``."""
    total = 0
    for path in Path(folder).rglob("*"):
        try:
            total += path.stat().st_size if path.is_file() else 0
        except OSError:
            continue
    return total
