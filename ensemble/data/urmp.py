"""URMP (University of Rochester Multi-Modal Music Performance): one folder per piece with
``AuMix_<piece>.wav``, ``AuSep_<n>_<inst>_<piece>.wav`` and ``F0s_<n>_<inst>_<piece>.txt``
(one "time f0" line per analysis frame, f0 = 0 when silent).

The annotated f0 is resampled onto the project grid: log-frequency interpolation between the
two nearest annotations, and a frame is voiced when its nearest annotation is. Player 1 is
the leader (URMP lists the melody part first).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ensemble.config import FRAME_RATE
from ensemble.data.example import (
    StemExample,
    TrackRef,
    check_lengths,
    loudness,
    n_samples_of,
    read_mono,
    tracked_f0,
)
from ensemble.data.instruments import URMP_INSTRUMENTS
from ensemble.data.splits import read_splits
from ensemble.errors import DataError

STEM_FILE = re.compile(r"^AuSep_(\d+)_([A-Za-z]+)_(.+)\.wav$")


def is_urmp(root: Path) -> bool:
    """Whether `root` is a URMP piece folder or holds some (directly or one level down)."""
    return bool(_piece_folders(root))


def _piece_folders(root: Path) -> list[Path]:
    if any(root.glob("AuSep_*.wav")):
        return [root]
    found = sorted({p.parent for p in root.glob("*/AuSep_*.wav")})
    return found or sorted({p.parent for p in root.glob("*/*/AuSep_*.wav")})


def list_urmp(root: Path) -> list[TrackRef]:
    """Every piece folder; split from ``root/splits.json`` when present."""
    splits = read_splits(root)
    return [TrackRef("urmp", f.name, splits.get(f.name), f) for f in _piece_folders(root)]


def annotation_to_frames(times: np.ndarray, f0: np.ndarray, n_frames: int) -> np.ndarray:
    """(T,) f0 on the project grid from (K,) annotation times (s) and f0 values (Hz, 0 = silent)."""
    grid = np.arange(n_frames) / FRAME_RATE
    voiced = f0 > 0
    if not voiced.any():
        return np.zeros(n_frames, np.float32)
    log_f0 = np.interp(grid, times[voiced], np.log2(f0[voiced]))
    nearest = np.clip(np.searchsorted(times, grid), 1, len(times) - 1)
    nearest -= (grid - times[nearest - 1]) < (times[nearest] - grid)
    inside = (grid >= times[0]) & (grid <= times[-1])
    return np.where(voiced[nearest] & inside, 2.0**log_f0, 0.0).astype(np.float32)


def _read_annotation(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        table = np.loadtxt(path, ndmin=2)
    except ValueError as exc:
        raise DataError(f"'{path.name}' is not a two-column 'time f0' table ({exc})") from exc
    if table.shape[1] < 2 or len(table) < 2:
        raise DataError(f"'{path.name}' is not a two-column 'time f0' table")
    order = np.argsort(table[:, 0])
    return table[order, 0], table[order, 1]


def load_urmp_track(ref: TrackRef) -> list[StemExample]:
    """All separated stems of one URMP piece.

    Raises:
        DataError: unknown instrument abbreviation, undecodable audio, bad annotations,
            mismatched lengths.
    """
    folder = ref.path
    stems: list[tuple[int, str, Path]] = []
    for path in sorted(folder.glob("AuSep_*.wav")):
        match = STEM_FILE.match(path.name)
        if match is None:
            raise DataError(f"'{path.name}' does not follow AuSep_<n>_<instrument>_<piece>.wav")
        number, abbreviation = int(match[1]), match[2].lower()
        if abbreviation not in URMP_INSTRUMENTS:
            raise DataError(
                f"'{path.name}' names the unknown instrument '{abbreviation}' (known: "
                f"{', '.join(URMP_INSTRUMENTS)})"
            )
        stems.append((number, abbreviation, path))
    audio = {path.name: read_mono(path) for _, _, path in stems}
    lengths = {name: len(a) for name, a in audio.items()}
    for mix in folder.glob("AuMix_*.wav"):
        lengths[mix.name] = n_samples_of(mix)
    n_samples = check_lengths(lengths)
    first = min(number for number, _, _ in stems)
    examples = []
    for number, abbreviation, path in stems:
        clip = audio[path.name][:n_samples]
        n_frames = len(loudness_db := loudness(clip))
        annotation = folder / path.name.replace("AuSep_", "F0s_").replace(".wav", ".txt")
        if annotation.is_file():
            f0 = annotation_to_frames(*_read_annotation(annotation), n_frames)
            source = "annotation"
        else:
            f0, source = tracked_f0(clip), "tracker"
        examples.append(
            StemExample(
                track=ref.track,
                stem=f"S{number:02d}",
                instrument=URMP_INSTRUMENTS[abbreviation],
                is_drum=False,
                role="leader" if number == first else "follower",
                split=ref.split,
                audio=clip,
                f0_hz=f0,
                loudness_db=loudness_db,
                f0_source=source,
            )
        )
    return examples
