"""The ranking weights the listening room starts each page with: learned ones when a `ratings fit`
file exists (re-read when it changes while the app runs), else the library's defaults."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from ensemble.errors import EnsembleError
from ensemble.rag import DEFAULT_WEIGHTS, PART_NAMES, parse_weights

log = logging.getLogger(__name__)


class RankingWeights:
    """The current weights, whether they were learned, and a sentence for the page."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._stamp = file_stamp(path)
        self.weights, self.learned, self.note = initial_weights(path)
        self._lock = threading.Lock()

    def refresh(self) -> dict[str, float]:
        """The weights, re-read when the file changed since the last look (a `ratings fit` while
        the app runs), so a new page gets them without a restart."""
        stamp = file_stamp(self.path)
        with self._lock:
            if stamp != self._stamp:
                self._stamp = stamp
                self.weights, self.learned, self.note = initial_weights(self.path)
                log.info("ranking weights reloaded: %s", self.note)
            return dict(self.weights)

    def source(self, weights: dict[str, float]) -> str:
        """Which weights ranked a round: the learned ones, the defaults, or the listener's own
        (set in Advanced); `ratings fit` analyses may want to tell them apart."""
        if all(abs(weights[k] - self.weights[k]) < 1e-9 for k in PART_NAMES):
            return "learned" if self.learned else "default"
        return "custom"


def file_stamp(path: Path | None) -> tuple[int, int] | None:
    """(mtime in ns, size) of ``path``, or None when it does not exist."""
    try:
        stat = Path(path).stat() if path is not None else None
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size) if stat is not None else None


def initial_weights(path: Path | None) -> tuple[dict[str, float], bool, str]:
    """Learned weights when a `ratings fit` file exists, else the library defaults; returns
    (weights, learned, a sentence for the page)."""
    from ensemble.ratings import load_weights

    if path is None or not Path(path).is_file():
        return (dict(DEFAULT_WEIGHTS), False,
                "Candidates are ranked with the default score weights.")
    try:
        weights = parse_weights(load_weights(path))
    except EnsembleError as exc:
        log.warning("ignoring weights file: %s", exc)
        return dict(DEFAULT_WEIGHTS), False, f"Default score weights ({exc})"
    return (weights, True,
            f"Candidates are ranked with weights learned from ratings ({Path(path).name}).")
