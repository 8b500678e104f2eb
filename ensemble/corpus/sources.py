"""Which scores the renderer draws from music21's bundled corpus, and in what order.

Three kinds of source, mixed ~40% chorales / ~20% quartets / ~40% folk tunes:
- `chorale`: Bach's four-part chorales (bach/*.mxl);
- `quartet`: Haydn, Mozart and Beethoven string quartets (MusicXML movements or whole quartets);
- `folk`: single-line tunes in ABC (Essen folksongs, Nottingham, O'Neill's, Ryan's Mammoth, ...),
  arranged for a band by `ensemble.corpus.folk`.

A plan assigns every track slot a kind and a disjoint list of candidate pieces: the worker takes
the first candidate that parses into a usable arrangement, so the corpus is deterministic for a
seed however the work is scheduled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

KINDS = ("chorale", "quartet", "folk")
SHARES = {"chorale": 0.4, "quartet": 0.2, "folk": 0.4}
FOLK_FOLDERS = ("nottingham-dataset", "essenFolksong", "oneills1850", "ryansMammoth", "miscFolk")
QUARTET_COMPOSERS = ("haydn", "mozart", "beethoven")
NOT_QUARTETS = ("mozart/k545",)  # a piano sonata filed among Mozart's quartets
MAX_CANDIDATES = 6  # fallbacks per slot; a slot whose candidates all fail is dropped


@dataclass(frozen=True)
class PieceRef:
    """One score in music21's corpus: a corpus-relative path and, for ABC collections, a tune."""

    kind: str
    path: str  # e.g. "bach/bwv10.7.mxl", "essenFolksong/han1.abc"
    number: int | None = None

    @property
    def name(self) -> str:
        return self.path if self.number is None else f"{self.path}#{self.number}"

    @property
    def group(self) -> str:
        """Pieces of one group stay in one split: movements of a quartet share a group."""
        if self.kind == "quartet":
            return str(Path(self.path).parent) if "movement" in self.path else self.path
        return self.name

    def load(self):
        from music21 import corpus

        # forceSource: parse the bundled file itself, never music21's pickle cache in the shared
        # temp folder (another local user could plant a pickle there, and unpickling runs code).
        return corpus.parse(self.path, number=self.number, forceSource=True)


@dataclass(frozen=True)
class Slot:
    """One track to render: its id, its kind and the pieces to try in order."""

    index: int
    kind: str
    candidates: tuple[PieceRef, ...]

    @property
    def track(self) -> str:
        return f"Track{self.index + 1:05d}"


def _corpus_root() -> Path:
    import music21

    return Path(music21.__file__).parent / "corpus"


@lru_cache(maxsize=1)
def available_pieces() -> dict[str, tuple[PieceRef, ...]]:
    """Every usable-looking score per kind, in a stable order (no parsing, only file listing)."""
    root = _corpus_root()

    def relative(path: Path) -> str:
        return path.relative_to(root).as_posix()

    chorales = tuple(
        PieceRef("chorale", relative(p)) for p in sorted((root / "bach").glob("*.mxl"))
    )
    quartets = tuple(
        PieceRef("quartet", relative(p))
        for composer in QUARTET_COMPOSERS
        for p in sorted((root / composer).rglob("*.mxl"))
        if not relative(p).startswith(NOT_QUARTETS)
    )
    folk: list[PieceRef] = []
    for folder in FOLK_FOLDERS:
        for path in sorted((root / folder).glob("*.abc")):
            if path.stem.startswith("test"):  # music21's parser test files, not songs
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            numbers = [int(m) for m in re.findall(r"^X:\s*(\d+)", text, flags=re.MULTILINE)]
            folk.extend(PieceRef("folk", relative(path), n) for n in dict.fromkeys(numbers))
    return {"chorale": chorales, "quartet": quartets, "folk": tuple(folk)}


def _kind_counts(n_pieces: int | None, pools: dict[str, tuple[PieceRef, ...]]) -> dict[str, int]:
    """Pieces per kind: the shares of `n_pieces`, or for `None` every chorale and quartet plus as
    many folk tunes as chorales (the folk collections alone hold thousands of tunes)."""
    if n_pieces is None:
        return {
            "chorale": len(pools["chorale"]),
            "quartet": len(pools["quartet"]),
            "folk": min(len(pools["folk"]), len(pools["chorale"])),
        }
    counts = {kind: int(SHARES[kind] * n_pieces) for kind in KINDS}
    by_remainder = sorted(KINDS, key=lambda k: -(SHARES[k] * n_pieces % 1))
    for kind in by_remainder[: n_pieces - sum(counts.values())]:
        counts[kind] += 1
    return counts


def _interleave(counts: dict[str, int]) -> list[str]:
    """Kinds in an order whose every prefix keeps roughly the target mix (a short render of 5
    pieces still has all three kinds)."""
    total = sum(counts.values())
    used = dict.fromkeys(counts, 0)
    order: list[str] = []
    for i in range(total):
        kind = max(
            (k for k in KINDS if used[k] < counts[k]),
            key=lambda k: (counts[k] / total * (i + 1) - used[k], -KINDS.index(k)),
        )
        used[kind] += 1
        order.append(kind)
    return order


def plan(n_pieces: int | None, seed: int) -> list[Slot]:
    """Deterministic track slots for a render of `n_pieces` (None: all usable pieces)."""
    pools = available_pieces()
    rng = np.random.default_rng(seed)
    shuffled: dict[str, list[PieceRef]] = {}
    for kind in KINDS:
        pool = list(pools[kind])
        order = rng.permutation(len(pool))
        pieces = [pool[i] for i in order]
        if (
            kind == "folk"
        ):  # tunes with real chord symbols first: the only ones not harmonised by us
            pieces.sort(key=lambda p: not p.path.startswith("nottingham-dataset"))
        shuffled[kind] = pieces
    counts = _kind_counts(n_pieces, pools)
    counts = {kind: min(count, len(shuffled[kind])) for kind, count in counts.items()}
    slots: list[Slot] = []
    seen = dict.fromkeys(KINDS, 0)
    for index, kind in enumerate(_interleave(counts)):
        j, n_slots = seen[kind], counts[kind]
        seen[kind] += 1
        candidates = tuple(shuffled[kind][j::n_slots][:MAX_CANDIDATES])
        slots.append(Slot(index, kind, candidates))
    return slots
