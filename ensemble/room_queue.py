"""Rounds run one at a time, first come first served, and a waiting listener is told their place.

Gradio's own queue cannot say how many rounds are ahead of one listener to the handler, so the
room keeps its own line: a ticket per round asked for, taken in order. The page's handler waits
for its turn a second at a time and shows the place and an estimate of the wait meanwhile.
"""

from __future__ import annotations

import itertools
import threading
import time


class RoundQueue:
    """A first-come-first-served line of rounds with a moving estimate of a round's time."""

    def __init__(self, typical_s: float = 10.0) -> None:
        self._turn = threading.Condition()
        self._line: list[int] = []  # tickets waiting, the first one running
        self._numbers = itertools.count()
        self._typical_s = typical_s  # moving average of recent round times

    def join(self) -> int:
        """A ticket at the end of the line."""
        with self._turn:
            ticket = next(self._numbers)
            self._line.append(ticket)
            return ticket

    def place(self, ticket: int) -> tuple[int, float]:
        """(rounds ahead of ``ticket``, estimated seconds until it is ready)."""
        with self._turn:
            ahead = self._line.index(ticket) if ticket in self._line else 0
            return ahead, (ahead + 1) * self._typical_s

    def wait_turn(self, ticket: int, timeout: float | None = None) -> bool:
        """Block until ``ticket`` is first in line (True) or ``timeout`` passes (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._turn:
            while self._line and self._line[0] != ticket:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._turn.wait(left)
            return True

    def leave(self, ticket: int, seconds: float | None = None) -> None:
        """Take ``ticket`` out of the line (done, failed or given up); ``seconds``: how long
        its round took, for the estimate. Leaving twice is harmless."""
        with self._turn:
            if ticket in self._line:
                self._line.remove(ticket)
            if seconds is not None:
                self._typical_s = 0.7 * self._typical_s + 0.3 * seconds
            self._turn.notify_all()

    @property
    def waiting(self) -> int:
        with self._turn:
            return len(self._line)
