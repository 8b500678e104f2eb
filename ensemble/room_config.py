"""The listening room's settings: where it finds its models, index and database (`RoomConfig`,
read from the environment by `from_env`), and what a listener chose for a round
(`RoundOptions`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ensemble.errors import EnsembleError
from ensemble.limits import DEFAULT_TOP_K, HOPS, TOP_K
from ensemble.perform import PerformSettings
from ensemble.rag import DEFAULT_WEIGHTS
from ensemble.ratings.judgement import RATE_LIMIT_PER_HOUR

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_CHECKPOINTS = "ENSEMBLE_CHECKPOINTS"  # folder or Hugging Face repo id
ENV_INDEX = "ENSEMBLE_INDEX"
ENV_DB = "ENSEMBLE_RATINGS_DB"
ENV_WEIGHTS = "ENSEMBLE_WEIGHTS"
ENV_LISTEN = "ENSEMBLE_LISTEN_SECONDS"
ENV_SESSION_TTL = "ENSEMBLE_SESSION_TTL_S"

APP_MAX_SECONDS = 30.0  # longer uploads are refused (or trimmed on request): rounds stay short
LISTEN_SECONDS = 3.0  # each candidate must be heard this long (capped at half its length)
MAX_CANDIDATES = int(TOP_K.high)  # UI slots: Top-K's limit, shared with the CLI
MAX_HOPS = int(HOPS.high)
SESSION_TTL_S = 1800.0  # a session idle this long is ended (its files and state removed)
WORK_PREFIX = "ensemble-room-"


@dataclass
class RoomConfig:
    """Where the room finds its models, index and database; `from_env` reads the defaults."""

    checkpoints: str | Path | None = None  # None: the shipped checkpoints/
    index: Path | None = REPO_ROOT / "examples" / "index"
    ratings_db: Path = REPO_ROOT / "data" / "ratings.sqlite"
    weights: Path | None = REPO_ROOT / "data" / "ratings_weights.json"
    work_dir: Path | None = None  # rendered files; None: a fresh folder in the temp dir
    listen_seconds: float = LISTEN_SECONDS
    session_ttl_s: float = SESSION_TTL_S
    rate_limit_per_hour: int = RATE_LIMIT_PER_HOUR

    @classmethod
    def from_env(cls) -> RoomConfig:
        env = os.environ
        return cls(
            checkpoints=env.get(ENV_CHECKPOINTS) or None,
            index=Path(env.get(ENV_INDEX) or cls.index),
            ratings_db=Path(env.get(ENV_DB) or cls.ratings_db),
            weights=Path(env.get(ENV_WEIGHTS) or cls.weights),
            listen_seconds=_seconds(env, ENV_LISTEN, LISTEN_SECONDS, 0.0),
            session_ttl_s=_seconds(env, ENV_SESSION_TTL, SESSION_TTL_S, 1.0),
        )


def _seconds(env: Any, name: str, default: float, least: float) -> float:
    text = env.get(name, str(default))
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not least <= value < float("inf"):
        raise EnsembleError(f"{name} must be a number of seconds >= {least:g}, not {text!r}.")
    return value


@dataclass
class RoundOptions:
    """What the listener chose for a round (the app's controls)."""

    instruments: list[str]  # the band; the leader is added when missing
    leader: str | None = None
    top_k: int = DEFAULT_TOP_K
    hops: int = 1
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    settings: PerformSettings = field(default_factory=PerformSettings)
    trim: bool = False  # keep the first APP_MAX_SECONDS of a longer upload instead of refusing it
