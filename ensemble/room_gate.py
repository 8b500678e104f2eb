"""The listen gate: how much of each candidate a listener has heard, checked on the server.

The page reports what each candidate's player does: ``play``, ``progress`` (about once a second
while playing) and ``pause`` (also at the end or before a seek), each with the player's own media
position (``pos``, seconds into the clip) and the page's clock (``t``, seconds). What counts as
heard is media time, never clock time: between two reports of one play the credit is the
position's advance, capped at the page clock's advance, so 0.5× playback needs twice the wall
time and 2× playback earns no more than real time. Reports are weighed against the server's own
receipt times, so a client cannot claim more time than really passed.

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
LATENCY_SLACK_S = 0.75  # reports reach the server late and unevenly (the first one of a page most)
PACE_TOLERANCE = 1.1  # positions may run this much faster than the page clock (timer jitter)
OVERLAP_TOLERANCE_S = 1.0  # pausing A and playing B are two reports that may cross in flight
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

    server_start: float
    server_last: float
    page_last: float
    pos_last: float


@dataclass
class ListenLedger:
    """Listening in one round, per candidate index (the model's order)."""

    durations: list[float]
    heard: list[float] = field(default_factory=list)
    spans: list[tuple[int, float, float]] = field(default_factory=list)  # (index, start, end)
    too_fast: int = 0  # reports whose positions ran ahead of real time
    playing: dict[int, _Open] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.heard:
            self.heard = [0.0] * len(self.durations)

    def report(self, index: int, report: Report, now: float) -> float:
        """Apply one report for candidate ``index`` at server time ``now``; returns the seconds
        credited (0 for a play, or a pause without a play)."""
        opened = self.playing.get(index)
        if report.kind == "play" and opened is None:
            self.playing[index] = _Open(now, now, report.t, report.pos)
            return 0.0
        if opened is None:
            return 0.0  # e.g. the player's pause at the end, after its "ended" pause
        credit = self._advance(opened, report, now)
        self.heard[index] += credit
        if report.kind == "pause":
            del self.playing[index]
            self.spans.append((index, opened.server_start, now))
        return credit

    def _advance(self, opened: _Open, report: Report, now: float) -> float:
        moved = report.pos - opened.pos_last  # negative after a loop or a seek back
        page_dt = report.t - opened.page_last
        server_dt = now - opened.server_last
        if page_dt > server_dt + LATENCY_SLACK_S or page_dt < 0:
            self.too_fast += 1  # the page claims more time than passed on the server
        if moved > page_dt * PACE_TOLERANCE + 0.25:
            self.too_fast += 1  # positions ran ahead of the page's clock: sped up or made up
        opened.server_last, opened.page_last, opened.pos_last = now, report.t, report.pos
        return max(0.0, min(moved, page_dt, server_dt + LATENCY_SLACK_S))

    def overlap_seconds(self, now: float) -> float:
        """Seconds during which two different candidates were playing at once."""
        spans = self.spans + [(i, o.server_start, now) for i, o in self.playing.items()]
        total = 0.0
        for n, (a, a0, a1) in enumerate(spans):
            for b, b0, b1 in spans[n + 1:]:
                if a != b:
                    total += max(0.0, min(a1, b1) - max(a0, b0))
        return total

    def flags(self, fetched: list[bool], now: float) -> list[str]:
        """Consistency problems of this round's listening (empty when it looks honest)."""
        found = []
        if not all(fetched):
            found.append("not_fetched")
        if self.overlap_seconds(now) > OVERLAP_TOLERANCE_S:
            found.append("overlap")
        if self.too_fast:
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
