"""Shared fixtures: signals with known answers, written by the tests themselves."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from ensemble.config import SAMPLE_RATE


def tone(freq_hz: float, seconds: float, amp: float = 0.5, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A sine with a few harmonics (so trackers see a realistic spectrum), float32."""
    t = np.arange(int(seconds * sr)) / sr
    wave = sum(amp / k * np.sin(2 * np.pi * k * freq_hz * t) for k in (1, 2, 3))
    return (wave / 1.84).astype(np.float32)


def free_port() -> int:
    """A TCP port on localhost that nothing listens on (for an app under test)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def violin_like() -> np.ndarray:
    """3 s of A4 with vibrato: a pitched, voiced, steady-loudness signal."""
    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    phase = 2 * np.pi * np.cumsum(440.0 * (1 + 0.003 * np.sin(2 * np.pi * 5 * t))) / SAMPLE_RATE
    wave = sum(0.4 / k * np.sin(k * phase) for k in range(1, 6))
    return (wave / 1.0).astype(np.float32)


@contextmanager
def served_room(root: Path, listen_seconds: float) -> Iterator[tuple[str, object, Path]]:
    """The app on a free local port over a small test room in ``root``: (url, room, example)."""
    import app
    from ensemble.listening import Room
    from tests.test_app_handlers import make_room_files

    room = Room.from_config(make_room_files(root, listen_seconds=listen_seconds))
    demo = app.build_demo(room)
    port = free_port()
    app.launch(demo, room, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
               quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", room, root / "example.wav"
    finally:
        demo.close()
