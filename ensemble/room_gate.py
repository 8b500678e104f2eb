"""The listen gate: how much of each candidate a listener has heard, checked on the server.

The page reports what each candidate's player does: ``play``, ``progress`` (about once a second
while playing) and ``pause`` (also at the end or before a seek), each with the player's own media
position (``pos``, seconds into the clip) and the page's clock (``t``, seconds). What counts as
heard is media time, never clock time: between two reports of one play the credit is the
position's advance, capped at the page clock's advance, so 0.5× playback needs twice the wall
time and 2× playback earns no more than real time. Reports are weighed against the server's own
receipt times over the round, so a client cannot claim more time than really passed.

`ListenLedger.flags` then says whether the round's listening was consistent: every candidate's
audio was fetched by the session (`not_fetched`), no two candidates played at once (`overlap`),
and positions never ran ahead of real time (`too_fast`). A browser cannot prove that a person
heard anything (a muted tab plays too); these checks only catch clients that did not play the
audio as the page does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ensemble.errors import EnsembleError

KINDS = ("play", "progress", "pause")
# Reports reach the server late and unevenly (seconds apart while rounds are rendering).
LATENCY_SLACK_S = 5.0  # per span: credit never exceeds the server's time by more than this
CLOCK_SLACK_S = 3.0  # per round: the page's clock may run this far ahead of the server's
PACE_TOLERANCE = 1.1  # positions may run this much faster than the page clock (timer jitter)
OVERLAP_TOLERANCE_S = 1.0  # one player's pause and the next one's play are a moment apart
MAX_REPORTS = 32  # per call: a page sends one or two


@dataclass
class Report:
    slot: int
    kind: str
    pos: float  # media position, seconds
    t: float  # page clock, seconds


@dataclass
class _Open:
    """A candidate that is playing: where and when its last report was."""

    page_start: float
    server_last: float
    page_last: float
    pos_last: float


@dataclass
class ListenLedger:
    """Listening in one round, per candidate index (the model's order).

    Spans are kept on the page's clock: all reports of one page share it, so a pause and the
    next play stay in order however late the server handles them. The page's clock is then
    held against the server's over the whole round (`clock_ahead`).
    """

    durations: list[float]
    heard: list[float] = field(default_factory=list)
    spans: list[tuple[int, float, float]] = field(default_factory=list)  # (index, start, end)
    too_fast: int = 0  # spans whose positions ran ahead of the page's clock
    playing: dict[int, _Open] = field(default_factory=dict)
    clocks: list[float] = field(default_factory=list)  # first page t, first server time, last…

    def __post_init__(self) -> None:
        if not self.heard:
            self.heard = [0.0] * len(self.durations)

    def report(self, index: int, report: Report, now: float) -> float:
        """Apply one report for candidate ``index`` at server time ``now``; returns the seconds
        credited (0 for a play, or a pause without a play)."""
        self.clocks = (self.clocks[:2] or [report.t, now]) + [report.t, now]
        opened = self.playing.get(index)
        if report.kind == "play" and opened is None:
            self.playing[index] = _Open(report.t, now, report.t, report.pos)
            return 0.0
        if opened is None:
            return 0.0  # e.g. the player's pause at the end, after its "ended" pause
        credit = self._advance(opened, report, now)
        self.heard[index] += credit
        if report.kind == "pause":
            del self.playing[index]
            self.spans.append((index, opened.page_start, report.t))
        return credit

    def _advance(self, opened: _Open, report: Report, now: float) -> float:
        moved = report.pos - opened.pos_last  # negative after a loop or a seek back
        page_dt = report.t - opened.page_last
        server_dt = now - opened.server_last
        if moved > max(page_dt, 0.0) * PACE_TOLERANCE + 0.25:
            self.too_fast += 1  # positions ran ahead of the page's clock: sped up or made up
        opened.server_last, opened.page_last, opened.pos_last = now, report.t, report.pos
        # Never more than the server saw pass (with room for reports handled late).
        return max(0.0, min(moved, page_dt, server_dt + LATENCY_SLACK_S))

    def clock_ahead(self) -> float:
        """Seconds the page's clock ran ahead of the server's over the round (beyond what
        uneven handling delays explain): a page claiming time that did not pass."""
        if len(self.clocks) < 4:
            return 0.0
        page_first, server_first, page_last, server_last = self.clocks
        server = server_last - server_first
        return max(0.0, (page_last - page_first) - server * PACE_TOLERANCE - CLOCK_SLACK_S)

    def overlap_seconds(self) -> float:
        """Seconds (page clock) during which two different candidates were playing at once."""
        end = self.clocks[2] if self.clocks else 0.0
        spans = self.spans + [(i, o.page_start, end) for i, o in self.playing.items()]
        total = 0.0
        for n, (a, a0, a1) in enumerate(spans):
            for b, b0, b1 in spans[n + 1:]:
                if a != b:
                    total += max(0.0, min(a1, b1) - max(a0, b0))
        return total

    def flags(self, fetched: list[bool]) -> list[str]:
        """Consistency problems of this round's listening (empty when it looks honest)."""
        found = []
        if not all(fetched):
            found.append("not_fetched")
        if self.overlap_seconds() > OVERLAP_TOLERANCE_S:
            found.append("overlap")
        if self.too_fast or self.clock_ahead() > 0:
            found.append("too_fast")
        return found


def parse_reports(data: Any) -> list[Report]:
    """Reports from the page (a list of dicts, or its JSON text from an API client).

    Raises:
        EnsembleError: a report that is not {slot, kind, pos, t} with sane values.
    """
    import json

    if isinstance(data, str):
        try:
            data = json.loads(data) if data.strip() else []
        except ValueError as exc:
            raise EnsembleError(f"Listen reports must be JSON ({exc}).") from exc
    if isinstance(data, dict):
        data = data.get("reports", [data])
    if not isinstance(data, list) or len(data) > MAX_REPORTS:
        raise EnsembleError(f"Listen reports must be a list of at most {MAX_REPORTS} items.")
    return [_report(item) for item in data]


def _report(item: Any) -> Report:
    try:
        report = Report(int(item["slot"]), str(item["kind"]), float(item["pos"]),
                        float(item["t"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise EnsembleError(
            f"A listen report needs slot, kind, pos and t (got {item!r})."
        ) from exc
    if report.kind not in KINDS or not (math.isfinite(report.pos) and math.isfinite(report.t)):
        raise EnsembleError(f"A listen report's kind is one of {', '.join(KINDS)}, and pos and t "
                            f"are finite numbers of seconds (got {item!r}).")
    return report
