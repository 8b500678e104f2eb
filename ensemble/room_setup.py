"""What the listening room loads once at start-up: the index, the weights, version stamps, and
which instruments can play which role (asked of the library, not listed here)."""

from __future__ import annotations

import hashlib
import logging
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ensemble import __version__
from ensemble.config import SAMPLE_RATE
from ensemble.errors import EnsembleError
from ensemble.perform import Ensemble
from ensemble.rag import DEFAULT_WEIGHTS, RagIndex, open_index, parse_weights

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent


def instrument_roles(ensemble: Ensemble) -> tuple[list[str], list[str]]:
    """(instruments that can lead, instruments that can follow), found by asking
    `Ensemble.perform` to play a short tone with each: whatever the library refuses is never
    offered, and whatever it learns to play appears without a change here."""
    t = np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE
    tone = (0.3 * np.sin(2 * np.pi * 330.0 * t)).astype(np.float32)
    leaders = [name for name in ensemble.available if _plays(ensemble, tone, [name], name)]
    followers = []
    for name in ensemble.available:
        lead = next((n for n in leaders if n != name), None)
        if lead is not None and _plays(ensemble, tone, [lead, name], lead):
            followers.append(name)
    return leaders, followers


def _plays(ensemble: Ensemble, tone: np.ndarray, lineup: list[str], leader: str) -> bool:
    try:
        ensemble.perform(tone, lineup, leader)
    except EnsembleError as exc:
        log.info("not offered: %s as %s (%s)", lineup[-1],
                 "leader" if lineup == [leader] else "follower", exc)
        return False
    return True


def open_room_index(path: Path | None) -> tuple[RagIndex | None, str]:
    if path is None:
        return None, "No continuation index is configured."
    try:
        index = open_index(path)
    except EnsembleError as exc:
        log.warning("no RAG index: %s", exc)
        return None, str(exc)
    return index, f"Continuation index: {len(index)} chunks from {len(index.files)} files."


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


def tree_digest(root: Path, names: Sequence[str]) -> str:
    """Short sha256 over the named files under ``root`` (relative path + content)."""
    digest = hashlib.sha256()
    for path in sorted(p for name in names for p in Path(root).rglob(name)):
        digest.update(str(path.relative_to(root)).encode())
        with path.open("rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:12]


def app_version() -> str:
    """Package version plus the git commit when the app runs from a checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
            text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__}+{commit}" if commit else __version__
