"""Audio RAG: a chunk database of style and seam features, Top-K and multi-hop continuations.

Public API::

    report = build_index("data/corpus", "data/index")          # or engine="ray", add=True
    index = open_index("data/index")
    found = retrieve(audio, index, top_k=10, hops=1, weights=None)
    rendered = render_continuations(found)  # raw audio; a `Lineup` has them performed
    write_continuations("out/", rendered, notes=found.notes)

Modules: `chunks` (feature config, per-chunk features), `analyse` (audio → features → embedder),
`sources` (what to index), `store` (on-disk versions), `index` (opened index, stage-1 FAISS),
`build` (build/add, local or Ray), `scoring` (pure score functions), `search` (two-stage query),
`multihop` (beam search), `continuation` (retrieval: the entry point), `render` (seams and
audio, raw or performed: the one render path).
"""

from ensemble.rag.build import BuildReport, build_index
from ensemble.rag.chunks import FeatureConfig
from ensemble.rag.continuation import (
    Continuation,
    Retrieval,
    Segment,
    retrieve,
    write_continuations,
)
from ensemble.rag.index import RagIndex, open_index
from ensemble.rag.render import Lineup, render_continuations
from ensemble.rag.scoring import DEFAULT_WEIGHTS, PART_NAMES, parse_weights
from ensemble.rag.search import Span

__all__ = [
    "DEFAULT_WEIGHTS",
    "PART_NAMES",
    "BuildReport",
    "Continuation",
    "FeatureConfig",
    "Lineup",
    "RagIndex",
    "Retrieval",
    "Segment",
    "Span",
    "build_index",
    "open_index",
    "parse_weights",
    "render_continuations",
    "retrieve",
    "write_continuations",
]
