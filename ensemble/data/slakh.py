"""Slakh2100 / BabySlakh / our rendered corpus: ``TrackNNNNN/{mix, stems/SNN, MIDI/SNN.mid,
metadata.yaml}``.

Accepted variants: FLAC or WAV stems (babyslakh_16k has WAV), any sample rate (resampled to
16 kHz), tracks directly under the root or under ``train/ validation/ test/ omitted/`` (Slakh2100's
release layout, whose folder names then give the split), and ``splits.json`` (our corpus).
The f0 of a pitched stem comes from its MIDI file, else from the ``f0`` array our renderer
stores, else from the pitch tracker.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from ensemble.config import HOP_LENGTH
from ensemble.data.example import (
    StemExample,
    TrackRef,
    check_lengths,
    fit_frames,
    loudness,
    n_samples_of,
    read_mono,
    tracked_f0,
)
from ensemble.data.instruments import gm_instrument
from ensemble.data.midi import midi_f0
from ensemble.data.splits import read_splits
from ensemble.errors import DataError

SPLIT_FOLDERS = ("train", "validation", "test", "omitted")
AUDIO_SUFFIXES = (".flac", ".wav")
LEADER_MIN_VOICED = 0.2  # a leader candidate must play in at least this share of frames


def is_slakh(root: Path) -> bool:
    """Whether `root` holds Slakh-layout tracks (or is one)."""
    return bool(_track_folders(root))


def _track_folders(root: Path) -> list[tuple[Path, str | None]]:
    if (root / "metadata.yaml").is_file():
        return [(root, None)]
    found = [(p.parent, None) for p in sorted(root.glob("*/metadata.yaml"))]
    for split in SPLIT_FOLDERS:
        found += [(p.parent, split) for p in sorted(root.glob(f"{split}/*/metadata.yaml"))]
    return found


def list_slakh(root: Path) -> list[TrackRef]:
    """Every track under `root`, with its split from the folder layout or splits.json."""
    splits = read_splits(root)
    return [
        TrackRef("slakh", folder.name, split or splits.get(folder.name), folder)
        for folder, split in _track_folders(root)
    ]


def _read_metadata(folder: Path) -> dict:
    try:
        meta = yaml.safe_load((folder / "metadata.yaml").read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DataError(f"metadata.yaml is not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("stems"), dict):
        raise DataError("metadata.yaml has no 'stems' mapping")
    return meta


def _audio_file(folder: Path, name: str) -> Path:
    for suffix in AUDIO_SUFFIXES:
        if (folder / f"{name}{suffix}").is_file():
            return folder / f"{name}{suffix}"
    raise DataError(f"stem file '{folder.name}/{name}.flac' (or .wav) is missing")


def _pick_leader(f0s: dict[str, np.ndarray], classes: dict[str, str]) -> str | None:
    """For tracks without roles: the non-bass pitched stem with the highest median pitch among
    those that play often enough (the melody is usually the highest busy line)."""
    best, best_pitch = None, -1.0
    for stem, f0 in f0s.items():
        voiced = f0[f0 > 0]
        if classes[stem] == "Bass" or len(voiced) < LEADER_MIN_VOICED * max(len(f0), 1):
            continue
        if float(np.median(voiced)) > best_pitch:
            best, best_pitch = stem, float(np.median(voiced))
    return best


def load_slakh_track(ref: TrackRef) -> list[StemExample]:
    """All rendered stems of one track.

    Raises:
        DataError: bad YAML, a missing or undecodable stem, mismatched lengths, bad f0 files.
    """
    folder = ref.path
    meta = _read_metadata(folder)
    audio_dir = folder / str(meta.get("audio_dir") or "stems")
    midi_dir = folder / str(meta.get("midi_dir") or "MIDI")
    stems = _rendered_stems(meta)
    audio = {stem: read_mono(_audio_file(audio_dir, stem)) for stem in stems}
    n_samples = _common_length(folder, audio)
    n_frames = n_samples // HOP_LENGTH
    f0s: dict[str, tuple[np.ndarray, str]] = {}
    classes: dict[str, str] = {}
    for stem, info in stems.items():
        program, is_drum = _program(info)
        classes[stem] = str(info.get("inst_class") or gm_instrument(program, is_drum)[1])
        f0s[stem] = _stem_f0(folder, midi_dir, stem, info, audio[stem][:n_samples], n_frames)
    roles = _roles(stems, {stem: f0 for stem, (f0, _) in f0s.items()}, classes)
    return [
        _example(ref, stem, info, audio[stem][:n_samples], *f0s[stem], roles[stem])
        for stem, info in stems.items()
    ]


def _rendered_stems(meta: dict) -> dict[str, dict]:
    stems = {
        str(k): v
        for k, v in sorted(meta["stems"].items())
        if isinstance(v, dict) and v.get("audio_rendered", True)
    }
    if not stems:
        raise DataError("metadata.yaml lists no rendered stems")
    return stems


def _common_length(folder: Path, audio: dict[str, np.ndarray]) -> int:
    """Samples every stem (and the mix, read from its header) has; unequal lengths refused."""
    lengths = {stem: len(a) for stem, a in audio.items()}
    mix = next((folder / f"mix{s}" for s in AUDIO_SUFFIXES if (folder / f"mix{s}").is_file()), None)
    if mix is not None:
        lengths[mix.name] = n_samples_of(mix)
    return check_lengths(lengths)


def _program(info: dict) -> tuple[int, bool]:
    """(General MIDI program, is_drum) of a stem's metadata."""
    return int(info.get("program_num", 0) or 0), bool(info.get("is_drum", False))


def _stem_f0(folder: Path, midi_dir: Path, stem: str, info: dict, clip: np.ndarray,
             n_frames: int) -> tuple[np.ndarray, str]:
    """(f0 (T,), source): zeros for drums, else from the MIDI file, our renderer's f0 array or
    the pitch tracker, in that order of preference."""
    midi = midi_dir / f"{stem}.mid"
    if info.get("is_drum", False):
        return np.zeros(n_frames, np.float32), "midi"
    if midi.is_file():
        return midi_f0(midi, n_frames), "midi"
    if info.get("f0"):
        f0_file = folder / str(info["f0"])
        if not f0_file.is_file():
            raise DataError(f"f0 file '{info['f0']}' of stem {stem} is missing")
        return fit_frames(np.load(f0_file).astype(np.float32), n_frames, f"f0 of {stem}"), "midi"
    return tracked_f0(clip), "tracker"


def _roles(stems: dict[str, dict], f0s: dict[str, np.ndarray], classes: dict[str, str]
           ) -> dict[str, str]:
    """The roles the metadata gives, else the leader picked by pitch and the rest followers."""
    roles = {stem: info.get("role") for stem, info in stems.items()}
    if not any(r == "leader" for r in roles.values()):
        leader = _pick_leader(f0s, classes)
        roles = {stem: "leader" if stem == leader else "follower" for stem in stems}
    return {stem: str(role or "follower") for stem, role in roles.items()}


def _example(ref: TrackRef, stem: str, info: dict, clip: np.ndarray, f0: np.ndarray,
             source: str, role: str) -> StemExample:
    program, is_drum = _program(info)
    return StemExample(
        track=ref.track,
        stem=stem,
        instrument=str(info.get("instrument") or gm_instrument(program, is_drum)[0]),
        is_drum=is_drum,
        role=role,
        split=ref.split,
        audio=clip,
        f0_hz=f0,
        loudness_db=loudness(clip),
        f0_source=source,
    )
