"""Reading ``ROOT/splits.json`` ({"train": [...], "validation": [...], "test": [...]})."""

from __future__ import annotations

import json
from pathlib import Path

from ensemble.errors import DataError

SPLITS = ("train", "validation", "test")


def read_splits(root: Path) -> dict[str, str]:
    """Track id -> split from ``root/splits.json`` (empty when the file does not exist).

    Raises:
        DataError: the file exists but is not a JSON object of split name -> list of track ids.
    """
    path = root / "splits.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"'{path}' is not valid JSON ({exc}); fix or delete it.") from exc
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise DataError(f"'{path}' must map split names to lists of track ids.")
    return {str(track): str(split) for split, tracks in data.items() for track in tracks}


def check_split(split: str | None) -> None:
    """DataError for a split name that is not train, validation or test."""
    if split is not None and split not in SPLITS:
        raise DataError(f"Unknown split '{split}'; use one of {', '.join(SPLITS)}.")
