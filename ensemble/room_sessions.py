"""Listeners' sessions and their files: a session starts on page load, owns its round folders and
uploads, and is ended (its files removed, its clips no longer served) when the page closes or it
sits idle past the time limit."""

from __future__ import annotations

import threading
from pathlib import Path

from ensemble.perform import Performance
from ensemble.room_config import RoomConfig
from ensemble.room_files import remove, sweep
from ensemble.room_media import MediaRegistry
from ensemble.room_state import Round, Session


class Sessions:
    """Where every session's files live, and their removal."""

    def __init__(self, work_dir: Path, media: MediaRegistry, config: RoomConfig,
                 lock: threading.Lock) -> None:
        self.work_dir = work_dir
        self.media = media
        self.config = config  # its session time limit is read at each sweep
        self._lock = lock  # the room's lock over in-place session updates
        # Where the web layer keeps uploads and copies of the files it serves (Gradio's cache):
        # a session's go with it. Set by the app with `keep_copies_in`.
        self.copies_dir: Path | None = None
        self._shared_copies: frozenset[Path] = frozenset()
        self._uploads: dict[str, set[Path]] = {}  # session id -> the uploads it used

    def start(self, session: Session | None, local_id: str | None) -> Session:
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

    def end(self, session: Session | None) -> None:
        """Delete a session's files, uploads and copies, and stop serving its clips (page
        closed, state expired)."""
        if session is None:
            return
        self.media.drop_owner(session.session_id)
        remove(self.work_dir / session.session_id, self.copies_dir)
        self._release_uploads(session.session_id)

    def sweep(self) -> list[str]:
        """Remove sessions idle past the time limit (API clients never close a page)."""
        gone = sweep(self.work_dir, self.config.session_ttl_s, self.copies_dir)
        for session_id in gone:
            self.media.drop_owner(session_id)
            self._release_uploads(session_id)
        return gone

    def claim_upload(self, session: Session, path: Path) -> None:
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

    def round_folder(self, session: Session, round_uid: str) -> Path:
        folder = self.work_dir / session.session_id / round_uid
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def replace_round(self, session: Session, new_round: Round | None, folder: Path,
                      performance: Performance) -> None:
        """Make ``new_round`` the session's; the previous round's files, the copies the web
        layer made of them, and its clips go."""
        with self._lock:
            old = session.round
            if session.round_folder is not None:
                remove(session.round_folder, self.copies_dir)
            session.round = new_round
            session.round_folder = folder
            session.performance = performance
        if old is not None:
            self.media.drop(old.tokens)
