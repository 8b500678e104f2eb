"""`render_corpus`: plan, render in parallel, split by piece, report."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ensemble.config import AUDIO_RATES, SAMPLE_RATE
from ensemble.corpus import DEFAULT_SOUNDFONT
from ensemble.corpus.render import RenderConfig, check_renderer, render_track
from ensemble.corpus.sources import Slot, plan
from ensemble.errors import DataError

log = logging.getLogger(__name__)

SPLIT_SHARES = {"validation": 0.1, "test": 0.1}  # the rest is train


@dataclass
class CorpusSummary:
    """What a render produced."""

    root: Path
    tracks: dict[str, dict]  # track id -> metadata
    splits: dict[str, list[str]]
    skipped: list[str]  # slots without a usable piece


def make_splits(groups: dict[str, str], seed: int) -> dict[str, list[str]]:
    """Train/validation/test by piece group (~80/10/10): all tracks of a group share a split, and
    with three or more groups validation and test get at least one each.

    Args:
        groups: track id -> group (quartet movements of one work share a group).
    """
    names = sorted(set(groups.values()))
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    n = len(order)
    wanted = {s: (max(1, round(share * n)) if n >= 3 else 0) for s, share in SPLIT_SHARES.items()}
    assigned: dict[str, str] = {}
    counts = dict.fromkeys(wanted, 0)
    for group in order:
        split = next((s for s in ("test", "validation") if counts[s] < wanted[s]), "train")
        counts[split] = counts.get(split, 0) + 1
        assigned[group] = split
    splits: dict[str, list[str]] = {"train": [], "validation": [], "test": []}
    for track in sorted(groups):
        splits[assigned[groups[track]]].append(track)
    return splits


def _render_all(
    slots: list[Slot], out: Path, config: RenderConfig, workers: int
) -> Iterator[tuple[Slot, dict | None]]:
    if workers <= 1:
        for slot in slots:
            yield slot, render_track(slot, out, config)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [(slot, pool.submit(render_track, slot, out, config)) for slot in slots]
        for slot, future in futures:
            yield slot, future.result()


def render_corpus(
    out: Path,
    *,
    max_pieces: int | None = None,
    seed: int = 0,
    soundfont: Path = DEFAULT_SOUNDFONT,
    workers: int = 2,
    max_seconds: float = 60.0,
    sample_rate: int = SAMPLE_RATE,
    progress: bool = True,
) -> CorpusSummary:
    """Render a Slakh-layout corpus from music21's bundled scores.

    Args:
        out: output folder (created); tracks already rendered with the same settings are kept.
        max_pieces: number of tracks (None: every usable chorale and quartet and as many folk
            tunes as chorales).
        seed: drives piece choice, instrumentation, tempo, transposition and dynamics.
        soundfont: General MIDI soundfont for FluidSynth.
        workers: parallel render processes.
        max_seconds: longest track (before the 1 s release tail).
        sample_rate: rate of the rendered stems and mix (one of `AUDIO_RATES`; 44.1 kHz for
            training hi-fi decoders, which read the stems at their own rate).
        progress: show a tqdm bar.
    """
    from tqdm import tqdm

    if max_pieces is not None and max_pieces < 1:
        raise DataError(f"--max-pieces must be at least 1 (got {max_pieces}).")
    if max_seconds < 4:
        raise DataError(f"--max-seconds must be at least 4 s (got {max_seconds:g}).")
    if sample_rate not in AUDIO_RATES:
        rates = ", ".join(str(r) for r in AUDIO_RATES)
        raise DataError(f"--sample-rate must be one of {rates} Hz (got {sample_rate}).")
    soundfont = Path(soundfont).expanduser().resolve()
    check_renderer(soundfont)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"Cannot create the output folder '{out}' ({exc.strerror}).") from exc
    config = RenderConfig(seed, soundfont, float(max_seconds), int(sample_rate))
    slots = plan(max_pieces, seed)
    tracks: dict[str, dict] = {}
    skipped: list[str] = []
    bar = tqdm(total=len(slots), desc="rendering", unit="piece", disable=not progress)
    for slot, meta in _render_all(slots, out, config, workers):
        bar.update(1)
        if meta is None:
            skipped.append(slot.track)
        else:
            tracks[slot.track] = meta
    bar.close()
    splits = make_splits({t: m["group"] for t, m in tracks.items()}, seed)
    (out / "splits.json").write_text(json.dumps(splits, indent=1))
    log.info("rendered %d tracks into %s (%d slots skipped)", len(tracks), out, len(skipped))
    return CorpusSummary(out, tracks, splits, skipped)
