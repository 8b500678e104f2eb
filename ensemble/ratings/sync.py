"""Optional mirror of judgements to a Hugging Face dataset repo (Spaces have no persistent disk).

Each stored judgement is appended as one JSONL line to a file in a local staging folder, under
`CommitScheduler.lock`, and the scheduler commits changed files every few minutes. JSONL rather
than the SQLite file: a live WAL database cannot be copied consistently without a checkpoint,
while an append-only text file can be uploaded at any moment (the scheduler caps each file at
the size it saw, so a half-written line is never pushed). Every process writes its own file name,
so app replicas and restarts never overwrite each other's data in the repo.

Configure with ENSEMBLE_RATINGS_REPO (dataset repo id) and HF_TOKEN; ENSEMBLE_RATINGS_EVERY sets
the minutes between pushes (default 5).
"""

from __future__ import annotations

import os
import uuid
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ensemble.errors import EnsembleError
from ensemble.ratings.export import jsonl_line
from ensemble.ratings.judgement import Judgement

if TYPE_CHECKING:
    from huggingface_hub import HfApi

REPO_ENV, TOKEN_ENV, EVERY_ENV = "ENSEMBLE_RATINGS_REPO", "HF_TOKEN", "ENSEMBLE_RATINGS_EVERY"
PATH_IN_REPO = "ratings"


class HubSync:
    """Stages judgements as JSONL in `folder` and pushes them to `repo_id` in the background.

    `hf_api` is the HfApi client the scheduler commits through (a custom one sets the endpoint,
    user agent or token).
    """

    def __init__(
        self,
        repo_id: str,
        folder: str | Path,
        *,
        token: str | None = None,
        every_minutes: float = 5.0,
        hf_api: HfApi | None = None,
    ):
        # Imported here: huggingface_hub is only needed when the mirror is configured.
        from huggingface_hub import CommitScheduler

        self.folder = Path(folder)
        self.file = self.folder / f"judgements-{uuid.uuid4().hex}.jsonl"
        self.scheduler = CommitScheduler(
            repo_id=repo_id,
            repo_type="dataset",
            folder_path=self.folder,
            path_in_repo=PATH_IN_REPO,
            every=every_minutes,
            token=token,
            allow_patterns=["*.jsonl"],
            hf_api=hf_api,
        )

    @classmethod
    def from_env(cls, folder: str | Path, *, hf_api: HfApi | None = None) -> HubSync | None:
        """A mirror configured from the environment, or None when no repo or token is set."""
        repo, token = os.environ.get(REPO_ENV), os.environ.get(TOKEN_ENV)
        if not repo or not token:
            return None
        every_text = os.environ.get(EVERY_ENV, "5")
        try:
            every = float(every_text)
        except ValueError:
            every = -1.0
        if not every > 0:
            raise EnsembleError(f"{EVERY_ENV} must be a positive number of minutes "
                                f"(got {every_text!r}).")
        return cls(repo, folder, token=token, every_minutes=every, hf_api=hf_api)

    def append(self, judgement: Judgement) -> None:
        """Stage one judgement; the lock keeps a scheduled commit from reading a partial line."""
        line = jsonl_line(judgement)
        with self.scheduler.lock, self.file.open("a", encoding="utf-8") as stream:
            stream.write(line)

    def push(self) -> Future[Any]:
        """Commit staged changes now instead of at the next tick; the future holds the commit."""
        return self.scheduler.trigger()

    def close(self) -> None:
        """Push what is staged, wait for it, and stop the background schedule."""
        self.push().result()
        self.scheduler.stop()
