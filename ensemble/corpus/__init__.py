"""A multitrack corpus rendered from real scores, the way Slakh was made.

`render_corpus` draws Bach chorales, string quartets and folk tunes from music21's corpus,
arranges them (folk tunes for a band with bass, comping and drums), writes per-stem MIDI and
renders every stem with FluidSynth into the Slakh layout that `ensemble.data` loads.
Submodules load on first use so the CLI's --help stays instant.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Any

DEFAULT_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")  # Debian fluid-soundfont-gm

_LAZY = {
    "CorpusSummary": "ensemble.corpus.build",
    "make_splits": "ensemble.corpus.build",
    "render_corpus": "ensemble.corpus.build",
}

__all__ = ["DEFAULT_SOUNDFONT", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ensemble.corpus' has no attribute {name!r}")
