"""Candidate audio served under per-round random names, with a record of what was fetched.

The listening room serves each candidate at ``/room-audio/<token>.wav``, where the token is
random for every round (so a clip heard and revealed in one round comes back under a new name in
the next) and is known only to the session it was made for. Serving the files here, rather than
through Gradio's cache, lets the room check that a session really downloaded a candidate before
its listening counts: an API client that only calls play/pause never fetches a byte.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.responses import FileResponse, PlainTextResponse

PREFIX = "/room-audio/"

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[..., Awaitable[Any]], Callable[..., Awaitable[Any]]],
                   Awaitable[None]]


@dataclass
class Served:
    path: Path
    owner: str  # session id
    fetched: bool = False


class MediaRegistry:
    """Tokens → files, per owning session; thread-safe (Gradio workers and the ASGI loop)."""

    def __init__(self) -> None:
        self._files: dict[str, Served] = {}
        self._lock = threading.Lock()

    def add(self, path: Path, owner: str) -> str:
        """Serve ``path`` for ``owner`` under a fresh random token; returns the token."""
        token = secrets.token_urlsafe(12)
        with self._lock:
            self._files[token] = Served(Path(path), owner)
        return token

    @staticmethod
    def url(token: str) -> str:
        # Relative to the page, so the app also works behind a proxy's sub-path.
        return f"{PREFIX.lstrip('/')}{token}.wav"

    def open(self, token: str) -> Path | None:
        """The file behind ``token``, marked as fetched; None when unknown or gone."""
        with self._lock:
            served = self._files.get(token)
            if served is None or not served.path.is_file():
                return None
            served.fetched = True
            return served.path

    def fetched(self, token: str) -> bool:
        with self._lock:
            served = self._files.get(token)
            return served is not None and served.fetched

    def drop(self, tokens: list[str]) -> None:
        with self._lock:
            for token in tokens:
                self._files.pop(token, None)

    def drop_owner(self, owner: str) -> None:
        with self._lock:
            for token in [t for t, s in self._files.items() if s.owner == owner]:
                del self._files[token]


class MediaRoute:
    """ASGI middleware: answers ``GET/HEAD /room-audio/<token>.wav`` (with byte ranges, which
    players use to seek) and passes every other request on to the app."""

    def __init__(self, app: ASGIApp, registry: MediaRegistry) -> None:
        self.app = app
        self.registry = registry

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        token = path[len(PREFIX):].removesuffix(".wav")
        found = self.registry.open(token)
        response = (
            FileResponse(found, media_type="audio/wav", headers={"Cache-Control": "no-store"})
            if found is not None
            else PlainTextResponse("This clip has expired; perform the input again.", 404)
        )
        await response(scope, receive, send)
