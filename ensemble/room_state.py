"""What the listening room keeps per listener (`Session`, its current `Round`) and what its
handlers hand back to the page; plain data, no behaviour beyond a property or two."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ensemble.rag import Continuation
from ensemble.ratings import Candidate, Judgement
from ensemble.room_gate import ListenLedger

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from ensemble.perform import Performance
    from ensemble.room_listen import Gate
    from ensemble.song import Song


@dataclass
class Round:
    """One blind listening test; candidate indices are positions in the model's order."""

    uid: str  # also the judgement uid, so a resubmitted form is stored once
    fingerprint: str
    candidates: list[Candidate]
    shown_order: list[int]  # slot -> candidate index
    ledger: ListenLedger  # what was heard of each candidate, checked
    tokens: list[str]  # served-file tokens, per candidate index
    instruments: list[str]
    settings: dict[str, Any]
    metrics: list[dict[str, float | None]]  # song-metric summary per candidate index
    shown: list[str]  # letters, per slot
    continuations: list[Continuation] = field(default_factory=list)  # raw audio, to keep
    judgement: Judgement | None = None

    @property
    def submitted(self) -> bool:
        return self.judgement is not None

    def required_seconds(self, index: int, listen_seconds: float) -> float:
        # A clip shorter than twice the requirement only has to be heard halfway.
        return min(listen_seconds, 0.5 * self.ledger.durations[index])


@dataclass
class Session:
    """Everything of one listener (a browser tab): their ids and their current round."""

    session_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    local_id: str = ""  # the browser's own id from localStorage; "" for API clients
    round: Round | None = None
    round_folder: Path | None = None
    performance: Performance | None = None  # until `analyse_performance` has measured it
    song: Song | None = None  # the input and the continuations kept after it


@dataclass
class Input:
    """The listener's audio, read and checked: (N,) float32 at 16 kHz, and notes about it."""

    audio: np.ndarray
    notes: list[str]
    path: Path | None = None  # the upload it came from
    continues_song: bool = False  # the ending of the session's song, not a new input


@dataclass
class ShownCandidate:
    letter: str
    url: str  # relative to the page, served by `ensemble.room_media`
    figure: go.Figure
    duration_s: float
    need_s: float  # seconds to hear before Submit unlocks


@dataclass
class ShownRound:
    candidates: list[ShownCandidate]  # in shown order
    overview: go.Figure  # every candidate on one plot


@dataclass
class RoundResult:
    messages: list[str]
    mix_path: Path
    files: list[Path]  # mix and stems
    shown: ShownRound | None  # None when there are no continuations
    gate: Gate
    seconds: float  # wall time of the round

    @property
    def candidates(self) -> list[ShownCandidate]:
        return self.shown.candidates if self.shown is not None else []


@dataclass
class PerformanceAnalysis:
    figure: go.Figure
    table: list[list[Any]]  # PERFORMANCE_COLUMNS, one row per signal
    files: list[Path]  # mix, stems, metrics.json
