"""Listener judgements: durable storage, export, the Hub mirror, and learning ranker weights.

Typical app use::

    store = RatingsStore(db_path, hub=HubSync.from_env(staging_dir))
    store.add_listen_event(session_id, chunk_id, seconds, input_fingerprint=fp)
    store.add_judgement(Judgement(...))
    disagreements(judgement)  # where the listener and the score disagreed
"""

from ensemble.ratings.export import read_export, write_export
from ensemble.ratings.fit import (
    Disagreement,
    FitResult,
    disagreements,
    fit_weights,
    load_weights,
    save_weights,
)
from ensemble.ratings.judgement import Candidate, Judgement
from ensemble.ratings.store import RatingsStore
from ensemble.ratings.sync import HubSync

__all__ = [
    "Candidate",
    "Disagreement",
    "FitResult",
    "HubSync",
    "Judgement",
    "RatingsStore",
    "disagreements",
    "fit_weights",
    "load_weights",
    "read_export",
    "save_weights",
    "write_export",
]
