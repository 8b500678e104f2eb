"""Learn the composite weights from judgements with a Bradley–Terry model on score parts.

The ranker scores a candidate as composite = sum_k w_k * part_k. Each judgement becomes pairwise
outcomes (a ranking of K gives K(K-1)/2 wins; candidates the listener tied, and equal 1–5
ratings, give ties) fitted with Davidson's extension of Bradley–Terry: with d = w · (x_a - x_b),
P(a beats b) = e^{d/2} / Z, P(tie) = ν / Z, Z = e^{d/2} + e^{-d/2} + ν, which is the logistic
model when there are no ties (ν → 0); L2-regularised. Judgements flagged by the room (the listen
gate's checks, heard before, duplicates, rate limits) are left out unless asked for, and the
weights come with bootstrap 95% intervals over judgements. Judgements, not pairs, are split into
train and held-out, so pairs of one judgement never leak across the split. Only the direction of
w matters for ranking; the saved weights are rescaled to the old weights' total so composite
values stay on the familiar scale, and `bt_scale` keeps the factor that turns a composite
difference back into a win probability.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ensemble.errors import EnsembleError
from ensemble.outputs import replace_file
from ensemble.ratings.judgement import Judgement

WEIGHTS_VERSION = 1
# Aggregates, not parts: the composite is the weighted sum itself and the coherence is the
# weighted mean of the *_coherence parts, so weighting them too would be collinear.
EXCLUDED_PARTS = ("composite", "coherence")
BOOTSTRAP_RESAMPLES = 1000
WEIGHT_RESAMPLES = 200  # refits for the weights' intervals (each a small L-BFGS run)
NO_TIES = -12.0  # log ν at its floor: the model is plain Bradley–Terry
MIN_JUDGEMENTS = 30  # below this, `ratings fit` reports but does not write weights the app uses


# -- judgements as preferences -------------------------------------------------------------------

def human_utility(j: Judgement) -> np.ndarray:
    """Per-candidate preference, higher is better, equal means tied (for Kendall tau)."""
    k = len(j.candidates)
    if j.ranking is not None:
        u = np.empty(k)
        u[j.ranking] = np.arange(k, 0, -1)
        for members in j.ties or []:
            u[members] = u[members].max()
        return u
    if j.ratings is not None:
        u = np.asarray(j.ratings, dtype=float)
        if j.best is not None:
            u[j.best] += 0.5  # the best mark breaks a tie at the top rating
        return u
    u = np.zeros(k)
    u[j.best] = 1.0
    return u


def pairwise_outcomes(j: Judgement) -> list[tuple[int, int, float]]:
    """(a, b, y): y = 1 when the listener preferred a over b, 0.5 for a tie."""
    if j.verdict == "skip":
        return []
    if j.ranking is not None:
        r = j.ranking
        group = {i: n for n, members in enumerate(j.ties or []) for i in members}
        return [(r[p], r[q], 0.5 if group.get(r[p], -1) == group.get(r[q], -2) else 1.0)
                for p in range(len(r)) for q in range(p + 1, len(r))]
    u = human_utility(j)
    if j.ratings is None:  # best only: says nothing about the order of the others
        return [(j.best, b, 1.0) for b in range(len(u)) if b != j.best]
    pairs = []
    for a in range(len(u)):
        for b in range(a + 1, len(u)):
            if u[a] == u[b]:
                pairs.append((a, b, 0.5))
            else:
                pairs.append((a, b, 1.0) if u[a] > u[b] else (b, a, 1.0))
    return pairs


def with_keeps(judgements: list[Judgement], keeps: dict[str, list[str]]) -> list[Judgement]:
    """Judgements with the candidates their listeners kept for a song (`RatingsStore.keeps`).

    Keeping is a preference: the kept candidate over every other of its round. A judgement
    that already orders its candidates (a ranking or ratings) says more and is left as it is;
    a skipped or all-bad round without an order gains the keep as its best choice.
    """
    out = []
    for j in judgements:
        kept = keeps.get(j.uid, [])
        ids = [c.chunk_id for c in j.candidates]
        if kept and kept[-1] in ids and j.ranking is None and j.ratings is None:
            verdict = "ranking" if j.verdict == "skip" else j.verdict
            j = replace(j, verdict=verdict, best=ids.index(kept[-1]))
        out.append(j)
    return out


def part_matrix(j: Judgement, parts: list[str]) -> np.ndarray:
    """(K, P) score parts of each candidate; KeyError when a candidate lacks a part."""
    return np.array([[c.scores[p] for p in parts] for c in j.candidates], dtype=float)


def kendall_tau(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall tau-b (tie-corrected); NaN when either side is constant."""
    i, k = np.triu_indices(len(x), 1)
    sx, sy = np.sign(x[i] - x[k]), np.sign(y[i] - y[k])
    denom = np.sqrt(np.abs(sx).sum() * np.abs(sy).sum())
    return float((sx * sy).sum() / denom) if denom > 0 else float("nan")


# -- fitting -------------------------------------------------------------------------------------

def _pairs_design(judgements: list[Judgement], parts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    diffs, targets = [], []
    for j in judgements:
        x = part_matrix(j, parts)
        for a, b, y in pairwise_outcomes(j):
            diffs.append(x[a] - x[b])
            targets.append(y)
    return np.array(diffs).reshape(-1, len(parts)), np.array(targets)


def fit_davidson(judgements: list[Judgement], parts: list[str], *, l2: float = 1.0
                 ) -> tuple[np.ndarray, float]:
    """Weights (raw scale) and the tie parameter ν of Davidson's model (0 without ties)."""
    return _davidson(*_pairs_design(judgements, parts), l2=l2)


def _davidson(d: np.ndarray, y: np.ndarray, *, l2: float) -> tuple[np.ndarray, float]:
    """Davidson fit on pair differences ``d`` (pairs, parts) with outcomes ``y`` (1 or 0.5)."""
    from scipy.optimize import minimize

    # Standardise the part differences so one L2 strength suits parts on any scale.
    scale = np.sqrt((d**2).mean(axis=0))
    scale[scale == 0] = 1.0  # a part that never differs gets no weight from the data anyway
    z = d / scale
    tie = y == 0.5
    n_parts = d.shape[1]

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, log_nu = params[:n_parts], params[n_parts]
        half = 0.5 * (z @ w)
        log_z = np.logaddexp(np.logaddexp(half, -half), log_nu)
        p_win, p_loss, p_tie = np.exp(half - log_z), np.exp(-half - log_z), np.exp(log_nu - log_z)
        nll = np.where(tie, log_z - log_nu, log_z - half).sum()
        # d(-log P)/d(half): tie: p_win - p_loss; win: p_win - p_loss - 1.
        dhalf = p_win - p_loss - np.where(tie, 0.0, 1.0)
        grad_w = 0.5 * (z.T @ dhalf) + l2 * w
        grad_nu = (p_tie - tie).sum()
        return float(nll + 0.5 * l2 * w @ w), np.append(grad_w, grad_nu)

    start = np.append(np.zeros(n_parts), np.log(0.5) if tie.any() else NO_TIES)
    bounds = [(None, None)] * n_parts + [(NO_TIES, 5.0)]
    result = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds)
    nu = float(np.exp(result.x[n_parts])) if tie.any() else 0.0
    return result.x[:n_parts] / scale, nu


def weight_intervals(judgements: list[Judgement], parts: list[str], target: float, *,
                     l2: float, seed: int, resamples: int = WEIGHT_RESAMPLES
                     ) -> dict[str, list[float]]:
    """Bootstrap 95% intervals of the saved (rescaled) weights, resampling judgements."""
    rng = np.random.default_rng(seed + 1)
    designs = [_pairs_design([j], parts) for j in judgements]  # built once, resampled below
    draws = []
    for _ in range(resamples):
        sample = [designs[i] for i in rng.integers(0, len(designs), len(designs))]
        w = _davidson(np.concatenate([d for d, _ in sample]),
                      np.concatenate([y for _, y in sample]), l2=l2)[0]
        total = np.abs(w).sum()
        if total > 0:
            draws.append(w * target / total)
    if not draws:
        return {p: [float("nan")] * 2 for p in parts}
    low, high = np.percentile(np.array(draws), [2.5, 97.5], axis=0)
    return {p: [float(lo), float(hi)] for p, lo, hi in zip(parts, low, high, strict=True)}


@dataclass
class Agreement:
    """Per-judgement agreement of a weight vector with the listeners."""

    correct: np.ndarray  # correctly ordered non-tied pairs (a score tie counts half)
    pairs: np.ndarray  # non-tied pairs
    tau: np.ndarray  # Kendall tau-b of human preference vs composite (NaN if undefined)

    def summary(self) -> dict[str, float]:
        n = self.pairs.sum()
        return {
            "pairwise_accuracy": float(self.correct.sum() / n) if n else float("nan"),
            "kendall_tau": _nanmean(self.tau),
        }


def agreement(judgements: list[Judgement], parts: list[str], w: np.ndarray) -> Agreement:
    correct, pairs, tau = [], [], []
    for j in judgements:
        s = part_matrix(j, parts) @ w
        wins = [(a, b) for a, b, y in pairwise_outcomes(j) if y == 1.0]
        correct.append(sum(1.0 if s[a] > s[b] else 0.5 if s[a] == s[b] else 0.0
                           for a, b in wins))
        pairs.append(len(wins))
        tau.append(kendall_tau(human_utility(j), s))
    return Agreement(np.array(correct), np.array(pairs), np.array(tau))


def _nanmean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else float("nan")


def _bootstrap(old: Agreement, new: Agreement, seed: int) -> dict[str, dict[str, list[float]]]:
    """95% CIs over resampled held-out judgements, for old, new and their difference."""
    n = len(old.pairs)
    idx = np.random.default_rng(seed).integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))
    pairs = np.maximum(old.pairs[idx].sum(axis=1), 1)
    acc_old, acc_new = old.correct[idx].sum(axis=1) / pairs, new.correct[idx].sum(axis=1) / pairs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN resample: mean of empty slice
        tau_old, tau_new = np.nanmean(old.tau[idx], axis=1), np.nanmean(new.tau[idx], axis=1)

    def ci(v: np.ndarray) -> list[float]:
        v = v[~np.isnan(v)]
        return [float(q) for q in np.percentile(v, [2.5, 97.5])] if v.size else [np.nan] * 2

    return {
        "old": {"pairwise_accuracy": ci(acc_old), "kendall_tau": ci(tau_old)},
        "new": {"pairwise_accuracy": ci(acc_new), "kendall_tau": ci(tau_new)},
        "gain": {"pairwise_accuracy": ci(acc_new - acc_old), "kendall_tau": ci(tau_new - tau_old)},
    }


@dataclass
class FitResult:
    weights: dict[str, float]
    old_weights: dict[str, float]
    fitted_on: int
    bt_scale: float  # P(a beats b) = sigmoid(bt_scale * (composite_a - composite_b))
    metrics: dict[str, Any] = field(default_factory=dict)
    intervals: dict[str, list[float]] = field(default_factory=dict)  # bootstrap 95% per part
    tie_strength: float = 0.0  # Davidson's ν (0: no ties in the data)
    excluded: dict[str, int] = field(default_factory=dict)  # flagged judgements left out, by flag

    def to_json(self) -> dict[str, Any]:
        return {
            "version": WEIGHTS_VERSION,
            "weights": self.weights,
            "weights_ci95": self.intervals,
            "fitted_on": self.fitted_on,
            "tie_strength": self.tie_strength,
            "excluded": self.excluded,
            "bt_scale": self.bt_scale,
            "old_weights": self.old_weights,
            "metrics": self.metrics,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }


def default_old_weights(judgements: list[Judgement]) -> dict[str, float] | None:
    """The weights most judgements were ranked with (settings["weights"]), if recorded."""
    stored = [j.settings.get("weights") for j in judgements]
    valid = [json.dumps(s, sort_keys=True) for s in stored if _is_weights(s)]
    if not valid:
        return None
    return json.loads(Counter(valid).most_common(1)[0][0])


def default_parts(judgements: list[Judgement]) -> list[str]:
    """Score parts every candidate of every judgement has, except the aggregates."""
    common: set[str] | None = None
    for j in judgements:
        for c in j.candidates:
            common = set(c.scores) if common is None else common & set(c.scores)
    return sorted((common or set()) - set(EXCLUDED_PARTS))


def fit_weights(
    judgements: list[Judgement],
    *,
    old_weights: dict[str, float] | None = None,
    parts: list[str] | None = None,
    holdout: float = 0.25,
    seed: int = 0,
    l2: float = 1.0,
    include_flagged: bool = False,
    resamples: int = WEIGHT_RESAMPLES,
) -> FitResult:
    """Fit new weights with bootstrap intervals, and compare old and new on held-out judgements.

    Old weights: as given, else the weights recorded in the judgements' settings, else equal.
    Parts: as given, else the old weights' parts, else every part all candidates share. Flagged
    judgements are left out unless ``include_flagged``. The held-out metrics come from a model
    fitted on the training split; the returned weights are then refitted on all usable
    judgements (the held-out numbers estimate how they will do).
    """
    if not 0 <= holdout < 1:
        raise EnsembleError(f"The held-out fraction must be from 0 to below 1 (got {holdout}).")
    if not l2 >= 0:
        raise EnsembleError(f"The L2 strength must be 0 or more (got {l2}).")
    if not judgements:
        raise EnsembleError("There are no judgements yet; collect some ratings in the app first.")
    old = old_weights or default_old_weights(judgements)
    parts = list(parts or (old.keys() if old else default_parts(judgements)))
    if not parts:
        raise EnsembleError("The judgements share no score parts to weight; pass the parts.")
    old = old or {p: 1.0 / len(parts) for p in parts}
    w_old = np.array([old.get(p, 0.0) for p in parts])
    kept, excluded = _unflagged(judgements, include_flagged)
    usable = [j for j in kept if _usable(j, parts)]
    if not usable:
        raise EnsembleError(
            f"No judgement (flagged ones left out) compares two or more candidates that all "
            f"have the parts {', '.join(parts)}; check the parts or collect more ratings."
        )
    train, test = _split(usable, holdout, seed)
    w_train = fit_davidson(train, parts, l2=l2)[0]
    metrics: dict[str, Any] = {
        "parts": parts, "holdout": holdout, "seed": seed, "l2": l2,
        "skipped": len(kept) - len(usable),
        "train": _compare(train, parts, w_old, w_train),
    }
    if test:
        metrics["held_out"] = _held_out(test, parts, w_old, w_train, seed)

    w_all, nu = fit_davidson(usable, parts, l2=l2)
    total = np.abs(w_all).sum()
    if total == 0:
        raise EnsembleError("The judgements show no preference the score parts can explain "
                            "(every fitted weight is zero); collect more varied ratings.")
    target = np.abs(w_old).sum() or 1.0
    weights = {p: float(v) for p, v in zip(parts, w_all * target / total, strict=True)}
    intervals = weight_intervals(usable, parts, target, l2=l2, seed=seed, resamples=resamples)
    return FitResult(weights=weights, old_weights={p: float(old.get(p, 0.0)) for p in parts},
                     fitted_on=len(usable), bt_scale=float(total / target), metrics=metrics,
                     intervals=intervals, tie_strength=nu, excluded=excluded)


def _held_out(test: list[Judgement], parts: list[str], w_old: np.ndarray, w_new: np.ndarray,
              seed: int) -> dict[str, Any]:
    """Old and new weights on held-out judgements, with bootstrap 95% intervals."""
    held = _compare(test, parts, w_old, w_new)
    ci = _bootstrap(agreement(test, parts, w_old), agreement(test, parts, w_new), seed)
    for side in ("old", "new", "gain"):
        for name, bounds in ci[side].items():
            held[side][f"{name}_ci95"] = bounds
    return held


def _unflagged(judgements: list[Judgement], include_flagged: bool
               ) -> tuple[list[Judgement], dict[str, int]]:
    """The judgements to fit on, and how many were left out per flag."""
    if include_flagged:
        return list(judgements), {}
    excluded: Counter[str] = Counter(f for j in judgements for f in j.flags)
    return [j for j in judgements if not j.flags], dict(excluded)


def _split(usable: list[Judgement], holdout: float, seed: int
           ) -> tuple[list[Judgement], list[Judgement]]:
    """Judgements, not pairs, go to train or test: one judgement's pairs never straddle."""
    order = np.random.default_rng(seed).permutation(len(usable))
    n_test = min(len(usable) - 1, max(1, round(holdout * len(usable)))) if holdout > 0 else 0
    if holdout > 0 and n_test < 1:
        raise EnsembleError("Holding judgements out needs at least 2 of them; use a holdout of 0 "
                            "to fit on a single judgement.")
    return [usable[i] for i in order[n_test:]], [usable[i] for i in order[:n_test]]


def _compare(js: list[Judgement], parts: list[str], w_old: np.ndarray, w_new: np.ndarray
             ) -> dict[str, Any]:
    old, new = agreement(js, parts, w_old), agreement(js, parts, w_new)
    o, n = old.summary(), new.summary()
    return {"judgements": len(js), "pairs": int(old.pairs.sum()), "old": o, "new": n,
            "gain": {k: n[k] - o[k] for k in o}}


def _usable(j: Judgement, parts: list[str]) -> bool:
    return (len(j.candidates) >= 2 and bool(pairwise_outcomes(j))
            and all(p in c.scores for c in j.candidates for p in parts))


def _is_weights(w: Any) -> bool:
    return (isinstance(w, dict) and len(w) > 0
            and all(isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
                    and np.isfinite(v) for k, v in w.items()))


# -- weights files -------------------------------------------------------------------------------

def save_weights(result: FitResult, path: str | Path) -> Path:
    """Write the weights JSON atomically (the app may be reading the old file)."""
    path = Path(path)
    text = json.dumps(_finite_or_null(result.to_json()), indent=2, allow_nan=False) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replace_file(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise EnsembleError(f"Cannot write weights to {path}: {exc.strerror or exc}.") from exc
    return path


def _finite_or_null(x: Any) -> Any:
    """NaN metrics (e.g. tau with no ranked pairs) become null: strict JSON readers reject NaN."""
    if isinstance(x, dict):
        return {k: _finite_or_null(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite_or_null(v) for v in x]
    return None if isinstance(x, float) and not np.isfinite(x) else x


def load_weights(path: str | Path) -> dict[str, float]:
    """Part weights from a file written by `ratings fit` (or a plain {"part": weight} JSON)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EnsembleError(f"Cannot read weights file {path}: {exc.strerror or exc}.") from exc
    except ValueError as exc:
        raise EnsembleError(f"Weights file {path} is not valid JSON ({exc}).") from exc
    weights = data.get("weights", data) if isinstance(data, dict) else None
    if not _is_weights(weights):
        raise EnsembleError(f"Weights file {path} holds no {{part: number}} weights; write it "
                            "with `python -m ensemble ratings fit`.")
    return {k: float(v) for k, v in weights.items()}


# -- one judgement, for the app ------------------------------------------------------------------

@dataclass
class Disagreement:
    candidate: int  # index into judgement.candidates
    chunk_id: str
    human_rank: int  # 1 = the listener's favourite (equal ratings share a rank)
    model_rank: int  # 1 = highest composite

    @property
    def shift(self) -> int:
        """Positive: the listener placed it higher than the score did."""
        return self.model_rank - self.human_rank


def disagreements(j: Judgement, weights: dict[str, float] | None = None) -> list[Disagreement]:
    """Candidates whose human and model ranks differ, largest difference first.

    Model ranks are those stored with the judgement (what the app computed), or recomputed from
    `weights` (e.g. to show what fitted weights would have changed).
    """
    if weights is None:
        model = np.array([c.rank for c in j.candidates])
    else:
        try:
            s = part_matrix(j, list(weights)) @ np.array(list(weights.values()))
        except KeyError as exc:
            raise EnsembleError(f"The candidates have no {exc} score to weight.") from exc
        model = 1 + (s[None, :] > s[:, None]).sum(axis=1)
    u = human_utility(j)
    human = 1 + (u[None, :] > u[:, None]).sum(axis=1)
    # With only a best mark, the listener ranked nobody else.
    known = range(len(u)) if j.ranking is not None or j.ratings is not None else [j.best]
    found = [Disagreement(i, j.candidates[i].chunk_id, int(human[i]), int(model[i]))
             for i in known if human[i] != model[i]]
    return sorted(found, key=lambda d: (-abs(d.shift), d.human_rank))
