"""A simulated listener: judgements drawn from a hidden "true" weighting of the score parts.

Used to check end to end that `fit` recovers preferences it was not told (tests, CI, demos):
each candidate gets random score parts, the app's ranker orders them with `ranker_weights`, and
the listener ranks (or rates) them by the true weights plus Gaussian noise.
"""

from __future__ import annotations

import itertools

import numpy as np

from ensemble.ratings.judgement import Candidate, Judgement

RATING_EDGES = np.array([-0.84, -0.25, 0.25, 0.84])  # standard-normal quintiles -> 1..5


def synthetic_judgements(
    n: int,
    true_weights: dict[str, float],
    ranker_weights: dict[str, float],
    *,
    k: int = 5,
    noise: float = 0.1,
    kind: str = "ranking",
    seed: int = 0,
    tie_margin: float = 0.0,
) -> list[Judgement]:
    """`n` judgements of `k` candidates; `kind` is "ranking" or "ratings" (1–5 plus best).

    With ``tie_margin`` > 0, a ranking listener calls neighbours whose felt quality differs by
    less than the margin a tie (verdict "tie", the groups in `ties`).
    """
    rng = np.random.default_rng(seed)
    parts = sorted(set(true_weights) | set(ranker_weights))
    w_true = np.array([true_weights.get(p, 0.0) for p in parts])
    w_rank = np.array([ranker_weights.get(p, 0.0) for p in parts])
    out = []
    for t in range(n):
        x = rng.uniform(0.0, 1.0, size=(k, len(parts)))
        composite = x @ w_rank
        model_order = np.argsort(-composite, kind="stable")
        x, composite = x[model_order], composite[model_order]  # candidates in model order
        felt = x @ w_true + rng.normal(0.0, noise, size=k)
        candidates = [
            Candidate(chunk_id=f"chunk-{t}-{i}", source=f"track{t % 7:05d}.flac",
                      start_s=float(rng.uniform(0, 60)),
                      scores={**dict(zip(parts, map(float, x[i]), strict=True)),
                              "composite": float(composite[i])},
                      rank=i + 1)
            for i in range(k)
        ]
        judgement = Judgement(
            session_id=f"sim-{t // 4}",
            input_fingerprint=f"{t:064x}",
            candidates=candidates,
            shown_order=[int(i) for i in rng.permutation(k)],
            listen_seconds=[float(s) for s in rng.uniform(3, 12, size=k)],
            settings={"top_k": k, "hops": 1, "weights": dict(ranker_weights)},
            instruments=["violin", "cello"],
            model_version="sim", index_version="sim", app_version="sim",
        )
        if kind == "ranking":
            judgement.ranking = [int(i) for i in np.argsort(-felt, kind="stable")]
            judgement.ties = _tied_groups(judgement.ranking, felt, tie_margin) or None
            judgement.verdict = "tie" if judgement.ties else "ranking"
        elif kind == "ratings":
            z = (felt - felt.mean()) / (felt.std() + 1e-9)
            judgement.ratings = [int(r) for r in 1 + np.searchsorted(RATING_EDGES, z)]
            judgement.best = int(np.argmax(felt))
        else:
            raise ValueError(f"unknown kind {kind!r}")
        out.append(judgement)
    return out


def _tied_groups(ranking: list[int], felt: np.ndarray, margin: float) -> list[list[int]]:
    """Runs of neighbours in the ranking, each within ``margin`` of the one before."""
    groups: list[list[int]] = []
    run = [ranking[0]]
    for a, b in itertools.pairwise(ranking):
        if felt[a] - felt[b] < margin:
            run.append(b)
            continue
        if len(run) > 1:
            groups.append(run)
        run = [b]
    if len(run) > 1:
        groups.append(run)
    return groups
