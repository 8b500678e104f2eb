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
        _check(self.ranking is not None or self.ratings is not None or self.best is not None,
               "The judgement has no ranking, no ratings and no best choice: nothing to store.")
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
        for name in ("model_version", "index_version", "app_version", "uid"):
            _check(isinstance(getattr(self, name), str), f"The {name} must be text.")
        _check(self.uid != "", "The judgement uid must not be empty.")


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
