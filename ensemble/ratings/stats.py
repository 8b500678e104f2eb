"""Counts over a ratings database that a maintainer wants at a glance (`ensemble ratings stats`)."""

from __future__ import annotations

import json
from typing import Any

from ensemble.ratings.database import Database
from ensemble.ratings.judgement import FLAGS, GATE_FLAGS


def ratings_stats(db: Database) -> dict[str, Any]:
    with db.read() as conn:
        n, sessions, first, last, n_ranked, n_rated, n_best = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT session_id), MIN(created_at), MAX(created_at), "
            "COUNT(ranking), COUNT(ratings), "
            "SUM(ranking IS NULL AND ratings IS NULL) FROM judgements"
        ).fetchone()
        events, listened = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(seconds), 0) FROM listen_events"
        ).fetchone()
        keeps = conn.execute("SELECT COUNT(*) FROM keeps").fetchone()[0]
        flags = conn.execute("SELECT flags FROM judgements WHERE flags != '[]'").fetchall()
        verdicts = dict(conn.execute(
            "SELECT verdict, COUNT(*) FROM judgements GROUP BY verdict").fetchall())
        per_listener = [c for (c,) in conn.execute(
            "SELECT COUNT(*) FROM judgements GROUP BY CASE WHEN local_id != '' THEN local_id "
            "ELSE session_id END").fetchall()]
    return {
        "judgements": n, "sessions": sessions, "first": first, "last": last,
        "with_ranking": n_ranked, "with_ratings": n_rated, "best_only": n_best or 0,
        "listen_events": events, "listened_seconds": float(listened), "keeps": keeps,
        "verdicts": verdicts, **_flag_counts([json.loads(text) for (text,) in flags]),
        "listeners": len(per_listener), "max_per_listener": max(per_listener, default=0),
    }


def _flag_counts(flag_lists: list[list[str]]) -> dict[str, Any]:
    """How many judgements carry flags, how many failed the listen gate, and each flag's count."""
    by_flag = {name: 0 for name in FLAGS}
    gate_failed = 0
    for found in flag_lists:
        gate_failed += any(f in GATE_FLAGS for f in found)
        for name in found:
            by_flag[name] = by_flag.get(name, 0) + 1
    return {"flagged": len(flag_lists), "gate_failed": gate_failed, "by_flag": by_flag}
