"""Ensemble: expressive, sound-conditioned music augmentation.

The library is importable without Gradio (the app is a thin layer in ``app.py``); heavy modules
(torch, librosa) load on first use of the objects that need them.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_audio": "ensemble.audio",
    "write_audio": "ensemble.audio",
    "extract_features": "ensemble.features",
    "FeatureFrame": "ensemble.features",
    "Instrument": "ensemble.instrument",
    "Conductor": "ensemble.conductor",
    "Ensemble": "ensemble.perform",
    "Performance": "ensemble.perform",
    "EnsembleError": "ensemble.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ensemble' has no attribute {name!r}")
