"""What the listening room loads once at start-up (`load_resources`): the models, the index, the
ratings store, the weights, version stamps, its work folder, and which instruments can play
which role (`Roles`, asked of the library, not listed here)."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ensemble import __version__
from ensemble.config import SAMPLE_RATE
from ensemble.errors import EnsembleError
from ensemble.limits import check_continue
from ensemble.perform import Ensemble
from ensemble.rag import RagIndex, open_index, parse_weights
from ensemble.ratings import HubSync, RatingsStore
from ensemble.room_config import REPO_ROOT, WORK_PREFIX, RoomConfig, RoundOptions
from ensemble.room_files import claim, remove_orphans
from ensemble.room_weights import RankingWeights

if TYPE_CHECKING:
    from ensemble.instrument import Instrument

log = logging.getLogger(__name__)

PREFERRED_BAND = ("cello", "bass", "drums", "viola", "piano", "flute")


@dataclass
class Roles:
    """Which instruments the page offers to lead and to follow."""

    leaders: list[str]
    followers: list[str]

    def default_leader(self) -> str | None:
        return "violin" if "violin" in self.leaders else next(iter(self.leaders), None)

    def band_choices(self, leader: str | None) -> list[str]:
        """Instruments that can follow ``leader`` (every follower but the leader itself)."""
        return [n for n in self.followers if n != leader]

    def default_band(self, leader: str | None) -> list[str]:
        """Up to three followers for the first page load."""
        offered = self.band_choices(leader)
        return [n for n in PREFERRED_BAND if n in offered][:3] or offered[:2]

    def check(self, options: RoundOptions) -> RoundOptions:
        """``options`` with the leader in the band, the weights parsed; EnsembleError with a
        sentence for the listener when a choice cannot be played."""
        leader = options.leader or self.default_leader()
        band = [n for n in options.instruments if n and n != leader]
        if leader is None or leader not in self.leaders:
            raise EnsembleError(f"Choose a leader to play your melody: {', '.join(self.leaders)}.")
        refused = [n for n in band if n not in self.followers]
        if refused:
            raise EnsembleError(
                f"{', '.join(refused)} cannot play along (yet); the band can be "
                f"{', '.join(self.band_choices(leader))}."
            )
        weights = parse_weights({k: float(v) for k, v in options.weights.items()})
        check_continue(options.top_k, options.hops, weights)
        chosen = options.instruments if leader in options.instruments else [leader, *band]
        return RoundOptions(
            instruments=[n for n in chosen if n], leader=leader, top_k=int(options.top_k),
            hops=int(options.hops), weights=weights, settings=options.settings, trim=options.trim,
        )


@dataclass
class Versions:
    """What a judgement records about the code and data that made its round."""

    model: str  # digest of the checkpoints
    index: str  # index version name and digest ("" without an index)
    app: str  # package version + git commit


@dataclass
class RoomResources:
    """Everything the room loads once and every session shares."""

    ensemble: Ensemble
    roles: Roles
    index: RagIndex | None
    index_note: str  # a sentence for the page about the index (or why there is none)
    embedder: Instrument | None  # the index's embedding model, when the ensemble has it
    store: RatingsStore
    weights: RankingWeights
    versions: Versions
    work_dir: Path


def load_resources(config: RoomConfig) -> RoomResources:
    """Load the models, index, store and weights ``config`` names, and stamp their versions."""
    ensemble = Ensemble.from_pretrained(config.checkpoints)
    index, index_note = open_room_index(config.index)
    embedder = (
        ensemble.instrument(index.config.embedder)
        if index is not None and index.config.embedder in ensemble.available
        else None
    )
    hub = HubSync.from_env(Path(config.ratings_db).parent / "hub-staging")
    versions = Versions(
        model=tree_digest(ensemble.root, ("model.safetensors", "config.json")),
        index=(f"{index.version.name}:{tree_digest(index.version, ('config.json', 'files.json'))}"
               if index is not None else ""),
        app=app_version(),
    )  # fmt: skip
    return RoomResources(
        ensemble=ensemble, roles=instrument_roles(ensemble), index=index, index_note=index_note,
        embedder=embedder, store=RatingsStore(config.ratings_db, hub=hub),
        weights=RankingWeights(config.weights), versions=versions, work_dir=work_folder(config),
    )  # fmt: skip


def work_folder(config: RoomConfig) -> Path:
    """The room's own folder; folders left by crashed runs are removed first."""
    if config.work_dir is not None:
        return claim(Path(config.work_dir))
    parent = Path(tempfile.gettempdir())
    remove_orphans(parent, WORK_PREFIX)
    return claim(parent / f"{WORK_PREFIX}{os.getpid()}")


def instrument_roles(ensemble: Ensemble) -> Roles:
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
    return Roles(leaders, followers)


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
