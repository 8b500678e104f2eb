"""Loaders for multitrack training data: one iterator of aligned single-instrument stems.

Layouts (detected by `iter_stems`):
- Slakh2100 / BabySlakh / the corpus `ensemble.corpus` renders (``TrackNNNNN/metadata.yaml``);
- URMP piece folders (``AuSep_*.wav``, ``F0s_*.txt``);
- symbolic scores (.krn, .abc, MusicXML) without audio.

A malformed track (missing stem, bad YAML or annotations, mismatched lengths) is skipped with a
`MalformedTrackWarning` naming it; the iteration goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from ensemble.data.example import MalformedTrackWarning, StemExample, TrackRef, warn_skip
from ensemble.data.slakh import is_slakh, list_slakh, load_slakh_track
from ensemble.data.splits import check_split
from ensemble.data.symbolic import is_symbolic, list_symbolic, load_symbolic_track
from ensemble.data.urmp import is_urmp, list_urmp, load_urmp_track
from ensemble.errors import DataError

__all__ = [
    "MalformedTrackWarning",
    "StemExample",
    "TrackRef",
    "detect_layout",
    "iter_slakh",
    "iter_stems",
    "iter_symbolic",
    "iter_tracks",
    "iter_urmp",
    "list_tracks",
    "load_track_stems",
]

_LISTERS: dict[str, Callable[[Path], list[TrackRef]]] = {
    "slakh": list_slakh,
    "urmp": list_urmp,
    "symbolic": list_symbolic,
}
_LOADERS: dict[str, Callable[[TrackRef], list[StemExample]]] = {
    "slakh": load_slakh_track,
    "urmp": load_urmp_track,
    "symbolic": load_symbolic_track,
}


def detect_layout(root: str | Path) -> str:
    """ "slakh", "urmp" or "symbolic" for a dataset folder (or a score file).

    Raises:
        DataError: the path does not exist or holds none of the known layouts.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"Dataset path '{root}' does not exist.")
    if root.is_dir() and is_slakh(root):
        return "slakh"
    if root.is_dir() and is_urmp(root):
        return "urmp"
    if is_symbolic(root):
        return "symbolic"
    raise DataError(
        f"'{root}' holds no dataset Ensemble knows: expected Slakh-style Track folders with "
        "metadata.yaml, URMP folders with AuSep_*.wav files, or .krn/.abc/MusicXML scores."
    )


def list_tracks(
    root: str | Path, split: str | None = None, layout: str | None = None
) -> list[TrackRef]:
    """The tracks of a dataset (in `split` only, when given)."""
    check_split(split)
    root = Path(root)
    if not root.exists():
        raise DataError(f"Dataset path '{root}' does not exist.")
    refs = _LISTERS[layout or detect_layout(root)](root)
    return [r for r in refs if split is None or r.split == split]


def load_track_stems(ref: TrackRef) -> list[StemExample]:
    """All stems of one track; DataError if the track is malformed."""
    return _LOADERS[ref.layout](ref)


def iter_tracks(
    root: str | Path, split: str | None = None, layout: str | None = None
) -> Iterator[tuple[TrackRef, list[StemExample]]]:
    """(track, its stems) for every well-formed track; malformed ones are warned about and
    skipped."""
    for ref in list_tracks(root, split, layout):
        try:
            stems = load_track_stems(ref)
        except DataError as exc:
            warn_skip(ref.track, str(exc))
            continue
        yield ref, stems


def iter_stems(root: str | Path, split: str | None = None) -> Iterator[StemExample]:
    """Every stem of every well-formed track under `root`, whatever its layout."""
    for _, stems in iter_tracks(root, split):
        yield from stems


def iter_slakh(root: str | Path, split: str | None = None) -> Iterator[StemExample]:
    """Stems of a Slakh2100 / BabySlakh / rendered-corpus folder."""
    for _, stems in iter_tracks(root, split, "slakh"):
        yield from stems


def iter_urmp(root: str | Path, split: str | None = None) -> Iterator[StemExample]:
    """Stems of URMP piece folders (audio, annotated f0)."""
    for _, stems in iter_tracks(root, split, "urmp"):
        yield from stems


def iter_symbolic(path: str | Path, split: str | None = None) -> Iterator[StemExample]:
    """Parts of .krn / .abc / MusicXML scores (audio=None, f0 and loudness from the notes)."""
    for _, stems in iter_tracks(path, split, "symbolic"):
        yield from stems
