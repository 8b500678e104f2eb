"""What a listener submits about a round, read into a judgement's terms, and what is revealed.

The page sends one rank per shown candidate (slot) plus three choices: "tie" (candidates given
the same rank are judged equal), "all bad", and "skip this round", and an optional reason. This
module turns them into the judgement's verdict, ranking and tied groups, with a readable
sentence for every mistake, and builds the reveal shown after the judgement is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ensemble.errors import EnsembleError
from ensemble.ratings import Judgement, disagreements
from ensemble.ratings.fit import human_utility, kendall_tau
from ensemble.ratings.judgement import MAX_REASON_CHARS

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
REVEAL_COLUMNS = ["candidate (your rank)", "model rank", "composite", "source", "start (s)"]
DETAIL_COLUMNS = [
    "candidate", "relevance", "coherence", "pitch coh.", "chroma coh.", "loudness coh.",
    "listened (s)", "melodic complexity", "dynamic range (dB)", "mean RMS",
]
FLAG_WORDS = {
    "not_fetched": "a candidate's audio was never downloaded",
    "overlap": "two candidates played at the same time",
    "too_fast": "playback ran faster than real time",
    "heard_before": "a candidate had already been revealed to you",
    "duplicate": "you already judged these candidates for this input",
    "rate_limited": "many judgements in a short time",
}


@dataclass
class Submission:
    """The form: ``ranks[slot]`` is the rank given to the candidate shown at that slot."""

    ranks: Sequence[int | str | None]
    tie: bool = False
    all_bad: bool = False
    skip: bool = False
    reason: str = ""


@dataclass
class Verdict:
    verdict: str  # see ensemble.ratings.judgement.VERDICTS
    ranking: list[int] | None  # candidate indices, best first
    ties: list[list[int]] | None
    reason: str


def read_submission(form: Submission, shown_order: list[int]) -> Verdict:
    """The judgement's verdict, ranking and ties; EnsembleError with a sentence otherwise."""
    reason = (form.reason or "").strip()
    if len(reason) > MAX_REASON_CHARS:
        raise EnsembleError(f"Keep the reason under {MAX_REASON_CHARS} characters.")
    if form.skip:
        return Verdict("skip", None, None, reason)
    given = [r for r in list(form.ranks)[: len(shown_order)] if r not in (None, "")]
    if form.all_bad and form.tie:
        raise EnsembleError('Choose "all bad" or "tie", not both: all bad already says none is '
                            "better than another.")
    if form.all_bad and not given:
        return Verdict("all_bad", None, None, reason)
    if form.tie:
        ranking, ties = _ranking_with_ties(form.ranks, shown_order)
        return Verdict("tie", ranking, ties, reason)
    ranking = ranking_from_slots(form.ranks, shown_order)
    return Verdict("all_bad" if form.all_bad else "ranking", ranking, None, reason)


def _slot_ranks(ranks: Sequence[int | str | None], k: int) -> list[int]:
    values: list[int] = []
    for slot, rank in enumerate(list(ranks)[:k]):
        try:
            values.append(int(rank))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise EnsembleError(f"Give Candidate {LETTERS[slot]} a rank from 1 to {k}.") from None
    if len(values) < k:
        raise EnsembleError(f"Rank all {k} candidates, from 1 (best) to {k}.")
    out_of_range = [LETTERS[s] for s, r in enumerate(values) if not 1 <= r <= k]
    if out_of_range:
        raise EnsembleError(f"Ranks go from 1 to {k}; check Candidate {', '.join(out_of_range)}.")
    return values


def ranking_from_slots(ranks: Sequence[int | str | None], shown_order: list[int]) -> list[int]:
    """Slot ranks (1 = best), all different → candidate indices best first."""
    k = len(shown_order)
    values = _slot_ranks(ranks, k)
    used = {r: [LETTERS[s] for s, v in enumerate(values) if v == r] for r in set(values)}
    twice = [f"rank {r} ({' and '.join(slots)})" for r, slots in sorted(used.items())
             if len(slots) > 1]
    if twice:
        missing = [str(r) for r in range(1, k + 1) if r not in used]
        raise EnsembleError(
            f"Give each candidate a different rank: {'; '.join(twice)} given twice, "
            f"{', '.join(missing)} not at all. To call some equal, tick \"tie\"."
        )
    return [shown_order[values.index(r)] for r in range(1, k + 1)]


def _ranking_with_ties(ranks: Sequence[int | str | None], shown_order: list[int]
                       ) -> tuple[list[int], list[list[int]]]:
    """Slot ranks where equal ranks mean a tie → (ranking, tied groups)."""
    values = _slot_ranks(ranks, len(shown_order))
    slots = sorted(range(len(values)), key=lambda s: (values[s], s))
    groups = [[shown_order[s] for s in slots if values[s] == r] for r in sorted(set(values))]
    ties = [g for g in groups if len(g) > 1]
    if not ties:
        raise EnsembleError('You ticked "tie": give the candidates you find equal the same rank.')
    return [shown_order[s] for s in slots], ties


@dataclass
class Reveal:
    judgement_id: int
    text: str  # Markdown: agreement, disagreements, flags
    rows: list[list[Any]]  # REVEAL_COLUMNS, in shown order
    details: list[list[Any]]  # DETAIL_COLUMNS, in shown order


def reveal(judgement: Judgement, letters: list[str], metrics: list[dict[str, Any]]) -> Reveal:
    """The scores and model ranks of a stored judgement; ``letters[slot]`` as shown."""
    letter_of = {index: letters[slot] for slot, index in enumerate(judgement.shown_order)}
    utility = human_utility(judgement) if judgement.ranking is not None else None
    rows, details = [], []
    for index in judgement.shown_order:
        c, m, s = judgement.candidates[index], metrics[index], judgement.candidates[index].scores
        place = None if utility is None else int(1 + (utility > utility[index]).sum())
        yours = "" if place is None else f" — your {_ordinal(place)}"
        rows.append([letter_of[index] + yours, c.rank, _r(s.get("composite")), c.source,
                     round(c.start_s, 2)])
        details.append([
            letter_of[index], _r(s.get("relevance")), _r(s.get("coherence")),
            _r(s.get("pitch_coherence")), _r(s.get("chroma_coherence")),
            _r(s.get("loudness_coherence")), round(judgement.listen_seconds[index], 1),
            m.get("melodic_complexity"), m.get("dynamic_range_db"), m.get("mean_rms"),
        ])
    lines = [f"**Saved** as rating #{judgement.id}. Scores and model ranks are now revealed."]
    if judgement.flags:
        why = "; ".join(FLAG_WORDS[f] for f in judgement.flags)
        lines.append(f"It is kept aside from training the ranker ({why}).")
    if utility is not None:
        lines += _agreement(judgement, letter_of)
    # Paragraphs apart, the list of disagreements as one Markdown list.
    text = "\n\n".join(line for line in lines if not line.startswith("- "))
    items = "\n".join(line for line in lines if line.startswith("- "))
    return Reveal(int(judgement.id or 0), f"{text}\n{items}" if items else text, rows, details)


def _agreement(judgement: Judgement, letter_of: dict[int, str]) -> list[str]:
    model_utility = -np.array([c.rank for c in judgement.candidates], float)
    tau = kendall_tau(human_utility(judgement), model_utility)
    lines = []
    if np.isfinite(tau):
        lines.append(f"Agreement between your order and the score's: Kendall τ = {tau:+.2f} "
                     "(+1 same order, −1 reversed).")
    found = disagreements(judgement)
    if not found:
        return [*lines, "You and the score agree on every candidate."]
    lines.append("Where you and the score disagreed:")
    return lines + [
        f"- Candidate {letter_of[d.candidate]}: you ranked it {_ordinal(d.human_rank)}, the "
        f"score {_ordinal(d.model_rank)} ("
        + ("you liked it more" if d.shift > 0 else "you liked it less") + ")."
        for d in found
    ]


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _r(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(float(x), digits)
