"""What to index: the mixes of a Slakh-layout corpus, or every audio file under a folder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ensemble.errors import DataError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff")
MIX_NAMES = ("mix.flac", "mix.wav")  # Slakh2100 ships flac, babyslakh_16k wav


@dataclass(frozen=True)
class SourceFile:
    """One file to index: where it is, its id in the index, and its corpus split if known."""

    path: Path
    name: str  # Slakh track id ("Track00001") or the path relative to SOURCE without suffix
    split: str | None = None


def _splits(root: Path) -> dict[str, str]:
    path = root / "splits.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        return {str(track): split for split, tracks in data.items() for track in tracks}
    except (OSError, json.JSONDecodeError, AttributeError, TypeError) as exc:
        raise DataError(
            f"'{path}' is not a valid splits file ({exc}); expected "
            '{"train": [...], "validation": [...], "test": [...]}.'
        ) from exc


def find_sources(source: str | Path) -> list[SourceFile]:
    """Files to index under ``source``, sorted by name.

    A folder whose subfolders hold ``mix.flac`` (Slakh layout) yields one file per track (the mix,
    named by the track folder, with its split from ``splits.json``); any other folder yields every
    audio file under it; a single audio file yields itself.

    Raises:
        DataError: the source does not exist or holds no audio.
    """
    root = Path(source)
    if root.is_file():
        if root.suffix.lower() not in AUDIO_SUFFIXES:
            raise DataError(f"'{root}' is not an audio file ({', '.join(AUDIO_SUFFIXES)}).")
        return [SourceFile(root, root.stem)]
    if not root.is_dir():
        raise DataError(f"Source folder '{root}' does not exist.")
    tracks = [
        next(mix for mix in (d / n for n in MIX_NAMES) if mix.is_file())
        for d in sorted(root.iterdir())
        if d.is_dir() and any((d / n).is_file() for n in MIX_NAMES)
    ]
    if tracks:
        splits = _splits(root)
        return [SourceFile(p, p.parent.name, splits.get(p.parent.name)) for p in tracks]
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise DataError(
            f"No audio files ({', '.join(AUDIO_SUFFIXES)}) under '{root}'; point SOURCE at a "
            "Slakh-layout corpus (TrackNNNNN/mix.flac) or a folder of recordings."
        )
    return [SourceFile(p, p.relative_to(root).with_suffix("").as_posix()) for p in files]
