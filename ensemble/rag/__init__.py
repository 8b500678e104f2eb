"""Audio RAG: a chunk database of style and seam features, Top-K and multi-hop continuations.

Public API::

    report = build_index("data/corpus", "data/index")          # or engine="ray", add=True
    index = open_index("data/index")
    results = continue_audio(audio, index, top_k=10, hops=1, weights=None)
    write_continuations("out/", results)

Modules: `chunks` (feature config, per-chunk features), `analyse` (audio → features → embedder),
`sources` (what to index), `store` (on-disk versions), `index` (opened index, stage-1 FAISS),
`build` (build/add, local or Ray), `scoring` (pure score functions), `search` (two-stage query),
`multihop` (beam search), `render` (seams and audio), `continuation` (the entry point).
"""

from ensemble.rag.build import BuildReport, build_index
from ensemble.rag.chunks import FeatureConfig
from ensemble.rag.continuation import Continuation, Segment, continue_audio, write_continuations
from ensemble.rag.index import RagIndex, open_index
from ensemble.rag.scoring import DEFAULT_WEIGHTS, PART_NAMES, parse_weights
from ensemble.rag.search import Span

__all__ = [
    "DEFAULT_WEIGHTS",
    "PART_NAMES",
    "BuildReport",
    "Continuation",
    "FeatureConfig",
    "RagIndex",
    "Segment",
    "Span",
    "build_index",
    "continue_audio",
    "open_index",
    "parse_weights",
    "write_continuations",
]
