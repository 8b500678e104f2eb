"""One listener's verdict on one set of candidates: the record every other ratings module shares.

Candidate indices (in `shown_order`, `ranking`, `best`, `listen_seconds`, `ratings`) always refer
to positions in `Judgement.candidates`, which keeps the model's order (rank 1 first), so the shown
(shuffled) order and the human order are both stored as permutations of the same list.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from ensemble.errors import EnsembleError

RATING_MIN, RATING_MAX = 1, 5
# What the listener said about the round as a whole. "ranking" is the usual full order; "tie"
# is a ranking whose `ties` groups are judged equal; "all_bad" may come with or without a
# ranking; "skip" carries no preference at all.
VERDICTS = ("ranking", "tie", "all_bad", "skip")
# Why a judgement should not train the ranker by default (stored, never silently dropped):
# the listen gate's server checks (see ensemble.room_gate), a candidate revealed to the same
# listener before, the same listener judging the same candidates again, and submitting faster
# than the room allows per listener.
FLAGS = ("not_fetched", "overlap", "too_fast", "heard_before", "duplicate", "rate_limited")
GATE_FLAGS = ("not_fetched", "overlap")
RATE_LIMIT_PER_HOUR = 30  # judgements per listener per hour before they are flagged
MAX_REASON_CHARS = 2000


@dataclass
class Candidate:
    """A continuation as the ranker saw it: where it comes from, its score parts, its rank."""

    chunk_id: str
    source: str
    start_s: float
    scores: dict[str, float]  # flat: relevance, coherence, composite and their sub-parts
    rank: int  # the model's rank, 1 = best composite

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        try:
            return cls(
                chunk_id=data["chunk_id"],
                source=data["source"],
                start_s=data["start_s"],
                scores=dict(data["scores"]),
                rank=data["rank"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EnsembleError(
                f"A candidate record is missing a field or has the wrong shape ({exc!r}); it needs "
                "chunk_id, source, start_s, scores and rank."
            ) from exc


def _new_uid() -> str:
    return uuid.uuid4().hex


@dataclass
class Judgement:
    """One submitted ranking and/or 1–5 ratings of a set of candidates (see module docstring)."""

    session_id: str
    input_fingerprint: str  # sha256 of the input samples, see ensemble.audio.fingerprint
    candidates: list[Candidate]
    shown_order: list[int]  # candidate indices in the order the listener saw them
    listen_seconds: list[float]  # per candidate index
    ranking: list[int] | None = None  # candidate indices, best first
    ratings: list[int] | None = None  # per candidate index, 1..5
    best: int | None = None  # candidate index the listener marked best
    instruments: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # top_k, hops, weights, ...
    model_version: str = ""
    index_version: str = ""
    app_version: str = ""
    verdict: str = "ranking"
    ties: list[list[int]] | None = None  # groups of candidate indices judged equal
    reason: str = ""  # the listener's own words, optional
    flags: list[str] = field(default_factory=list)  # see FLAGS
    local_id: str = ""  # the browser's own id (localStorage), to follow a listener across tabs
    # Client-made id: a resubmitted form (double click, retried request) is stored once.
    uid: str = field(default_factory=_new_uid)
    id: int | None = None  # assigned by the store
    created_at: str | None = None  # UTC ISO 8601, assigned by the store

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Judgement:
        try:
            fields = dict(data)
            fields["candidates"] = [Candidate.from_dict(c) for c in data["candidates"]]
            return cls(**fields)
        except (KeyError, TypeError) as exc:
            raise EnsembleError(
                f"A judgement record is missing a field or has an unknown one ({exc}); was it "
                "written by `ensemble ratings export`?"
            ) from exc

    def validate(self) -> None:
        """Raise EnsembleError with a readable sentence if this judgement cannot be stored."""
        k = len(self.candidates)
        _check(isinstance(self.session_id, str) and self.session_id.strip() != "",
               "The judgement has no session id.")
        _check(isinstance(self.input_fingerprint, str) and len(self.input_fingerprint) == 64
               and all(c in "0123456789abcdef" for c in self.input_fingerprint),
               "The input fingerprint must be a sha256 hex digest (ensemble.audio.fingerprint).")
        _check(k >= 1, "A judgement needs at least one candidate.")
        for i, cand in enumerate(self.candidates):
            _check_candidate(i, cand)
        ranks = [c.rank for c in self.candidates]
        _check(len(set(ranks)) == k, f"The candidates' model ranks must be distinct (got {ranks}).")
        _check(_is_permutation(self.shown_order, k),
               f"The shown order must list each of the {k} candidates exactly once "
               f"(got {self.shown_order}).")
        _check(isinstance(self.listen_seconds, list) and len(self.listen_seconds) == k
               and all(_is_number(s) and s >= 0 for s in self.listen_seconds),
               f"Listen times must be {k} non-negative numbers of seconds, one per candidate "
               f"(got {self.listen_seconds}).")
        self._validate_verdict(k)
        if self.ranking is not None:
            _check(_is_permutation(self.ranking, k),
                   f"The ranking must list each of the {k} candidates exactly once, best first "
                   f"(got {self.ranking}).")
        if self.ratings is not None:
            _check(isinstance(self.ratings, list) and len(self.ratings) == k
                   and all(_is_int(r) and RATING_MIN <= r <= RATING_MAX for r in self.ratings),
                   f"Ratings must be {k} whole numbers from {RATING_MIN} to {RATING_MAX}, one per "
                   f"candidate (got {self.ratings}).")
        if self.best is not None:
            _check(_is_int(self.best) and 0 <= self.best < k,
                   f"The best choice must be a candidate index from 0 to {k - 1} "
                   f"(got {self.best}).")
            if self.ranking is not None:
                _check(self.ranking[0] == self.best,
                       "The candidate marked best is not first in the ranking.")
            if self.ratings is not None:
                _check(self.ratings[self.best] == max(self.ratings),
                       "The candidate marked best has a lower rating than another candidate.")
        _check(isinstance(self.instruments, list)
               and all(isinstance(x, str) for x in self.instruments),
               "Instruments must be a list of instrument names.")
        _check(isinstance(self.settings, dict), "Settings must be a dictionary.")
        for name in ("model_version", "index_version", "app_version", "uid", "local_id"):
            _check(isinstance(getattr(self, name), str), f"The {name} must be text.")
        _check(self.uid != "", "The judgement uid must not be empty.")

    def _validate_verdict(self, k: int) -> None:
        _check(self.verdict in VERDICTS,
               f"The verdict must be one of {', '.join(VERDICTS)} (got {self.verdict!r}).")
        preference = self.ranking is not None or self.ratings is not None or self.best is not None
        _check(preference or self.verdict in ("skip", "all_bad"),
               "The judgement has no ranking, no ratings and no best choice: nothing to store.")
        _check(self.verdict != "skip" or not preference,
               "A skipped round carries no ranking, ratings or best choice.")
        _check((self.verdict == "tie") == bool(self.ties),
               "A tie verdict needs the tied groups, and only a tie verdict has them.")
        if self.ties:
            grouped = [i for group in self.ties for i in group]
            _check(self.ranking is not None and all(len(g) >= 2 for g in self.ties)
                   and all(_is_int(i) and 0 <= i < k for i in grouped)
                   and len(set(grouped)) == len(grouped),
                   f"Tied groups must hold two or more distinct candidate indices from 0 to "
                   f"{k - 1}, each in one group, alongside a ranking (got {self.ties}).")
        _check(isinstance(self.reason, str) and len(self.reason) <= MAX_REASON_CHARS,
               f"The reason must be text of at most {MAX_REASON_CHARS} characters.")
        _check(isinstance(self.flags, list) and all(f in FLAGS for f in self.flags),
               f"Flags must be a list drawn from {', '.join(FLAGS)} (got {self.flags}).")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise EnsembleError(message)


def _check_candidate(i: int, cand: Candidate) -> None:
    _check(isinstance(cand, Candidate), f"Candidate {i} is not a Candidate record.")
    _check(isinstance(cand.chunk_id, str) and cand.chunk_id != "",
           f"Candidate {i} has no chunk id.")
    _check(isinstance(cand.source, str), f"Candidate {i}'s source must be text.")
    _check(_is_number(cand.start_s) and cand.start_s >= 0,
           f"Candidate {i}'s start time must be a non-negative number of seconds.")
    _check(_is_int(cand.rank) and cand.rank >= 1, f"Candidate {i}'s model rank must be 1 or more.")
    _check(isinstance(cand.scores, dict) and len(cand.scores) > 0,
           f"Candidate {i} has no scores.")
    for name, value in cand.scores.items():
        _check(isinstance(name, str) and _is_number(value),
               f"Candidate {i}'s score {name!r} must be a finite number (got {value!r}).")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return (_is_int(x) or isinstance(x, float)) and math.isfinite(x)


def _is_permutation(seq: Any, k: int) -> bool:
    return (isinstance(seq, list) and all(_is_int(i) for i in seq)
            and sorted(seq) == list(range(k)))
