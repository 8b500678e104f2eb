"""A song that grows: an input, then retrieved continuations kept one after another.

The song is grown in raw audio (the input and the retrieved material, joined on the beat with
equal-power seams by `ensemble.rag`); each new section continues from the song's current ending,
and material already used is never retrieved again. Performing the whole song through the
ensemble at the end gives the mix, stems and MIDI of one coherent performance rather than a
patchwork of separately performed pieces.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ensemble.config import MAX_SECONDS, SAMPLE_RATE
from ensemble.errors import EnsembleError

if TYPE_CHECKING:
    from ensemble.perform import Performance
    from ensemble.rag.continuation import Continuation
    from ensemble.rag.index import RagIndex
    from ensemble.rag.search import Span


@dataclass
class Section:
    """One kept continuation and where it came from."""

    song_start_s: float  # where the section starts in the song
    seconds: float
    chunk_ids: list[str]
    source: str
    source_start_s: float  # where its material starts in the source (after beat alignment)
    composite: float
    model_rank: int
    tempo_ratio: float
    phase_error_ms: float


@dataclass
class Song:
    """The song so far: raw (unperformed) mono audio and its sections."""

    audio: np.ndarray  # (N,) float32 mono at SAMPLE_RATE
    input_seconds: float
    sections: list[Section] = field(default_factory=list)
    # The song's ending as it was before each section's seam crossfaded it (for undo).
    endings: list[np.ndarray] = field(default_factory=list, repr=False)

    @property
    def duration_s(self) -> float:
        return len(self.audio) / SAMPLE_RATE

    def used(self) -> list[Span]:
        """Indexed material the song already plays (never retrieved again)."""
        from ensemble.rag.search import Span

        return [
            Span(s.source, s.source_start_s, s.source_start_s + s.seconds * s.tempo_ratio)
            for s in self.sections
        ]

    def keep(self, continuation: Continuation) -> Song:
        """The song with ``continuation`` appended at its seam (the candidate's audio starts with
        the song's own ending, crossfaded into the new material at ``seam_s``)."""
        if continuation.audio is None or continuation.audio_rate != SAMPLE_RATE:
            raise EnsembleError(
                "This continuation has no raw audio at the analysis rate to keep; render it "
                "with `render_continuations(found)` (the song is grown raw, then performed)."
            )
        head = round(continuation.seam_s * SAMPLE_RATE)
        cut = len(self.audio) - head
        audio = np.concatenate([self.audio[:cut], continuation.audio])
        first = continuation.segments[0]
        section = Section(
            song_start_s=round(self.duration_s, 3),
            seconds=round(len(continuation.audio) / SAMPLE_RATE - continuation.seam_s, 3),
            chunk_ids=continuation.chunk_ids,
            source=first.source,
            source_start_s=first.start_s,
            composite=round(continuation.composite, 4),
            model_rank=continuation.rank,
            tempo_ratio=first.tempo_ratio,
            phase_error_ms=first.phase_error_ms,
        )
        return Song(
            audio.astype(np.float32),
            self.input_seconds,
            [*self.sections, section],
            [*self.endings, self.audio[cut:].copy()],
        )

    def undo(self) -> Song:
        """The song exactly as it was before its last section (the input cannot be undone)."""
        if not self.sections:
            raise EnsembleError("The song has no section to undo; it is only the input.")
        ending = self.endings[-1]
        keep = round(self.sections[-1].song_start_s * SAMPLE_RATE) - len(ending)
        audio = np.concatenate([self.audio[:keep], ending])
        return Song(audio, self.input_seconds, self.sections[:-1], self.endings[:-1])

    def to_json(self, **meta: Any) -> dict[str, Any]:
        return {
            **meta,
            "input_seconds": round(self.input_seconds, 3),
            "duration_s": round(self.duration_s, 3),
            "sections": [asdict(s) for s in self.sections],
        }


def grow(
    song: Song,
    index: RagIndex,
    *,
    sections: int,
    seconds: float,
    exclude: list[Span] | None = None,
    **search: Any,
) -> Song:
    """Keep the top-ranked continuation ``sections`` times.

    Args:
        song: the song to grow (e.g. `Song(input_audio, input_seconds)`).
        index: the RAG index to retrieve from.
        sections: how many continuations to keep.
        seconds: length of each.
        exclude: material never to use (e.g. the input's own file when it is indexed).
        **search: passed to `ensemble.rag.retrieve` (top_k, hops, weights, embedder, ...).

    Raises:
        EnsembleError: the song would pass the longest input Ensemble performs, or the index
            has nothing left that the song does not already play.
    """
    from ensemble.rag import render_continuations, retrieve

    total = song.duration_s + sections * seconds
    if total > MAX_SECONDS:
        raise EnsembleError(
            f"A song of {total:.0f} s would be longer than Ensemble performs ({MAX_SECONDS:g} s); "
            "ask for fewer sections or shorter ones."
        )
    for _ in range(sections):
        found = retrieve(song.audio, index, seconds=seconds,
                         exclude=[*(exclude or []), *song.used()], **search)  # fmt: skip
        if not found.continuations:
            raise EnsembleError("The index has no continuation left that the song does not use.")
        found.continuations = found.continuations[:1]  # only the kept one is heard
        song = song.keep(render_continuations(found)[0])
    return song


def write_song(folder: str | Path, song: Song, performance: Performance, **meta: Any) -> Path:
    """Write ``song.wav`` (stereo mix), ``stems/``, ``song.mid`` and ``song.json``."""
    out = Path(folder)
    performance.write(out, name=_song_name, midi=True)
    record = song.to_json(**meta, leader=performance.leader, instruments=list(performance.stems))
    record["rhythm"] = performance.grid.to_json()
    (out / "song.json").write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
    return out


def _song_name(stem: str, suffix: str) -> str:
    # The song's mix and MIDI are named after it; stems keep their instrument's name.
    return f"{'song' if stem in ('mix', 'arrangement') else stem}{suffix}"
