"""Per-file and per-query analysis: audio → features → embedder → chunks / query features.

This is the only expensive step of a build (pitch tracking and one decoder-GRU pass per file), so
it is a plain function of picklable arguments that either engine (in-process or Ray) can run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ensemble.audio import load_audio
from ensemble.errors import EnsembleError, IndexMismatchError
from ensemble.features import FeatureFrame, extract_features
from ensemble.rag.chunks import Embedder, FeatureConfig, FileChunks, QueryFeatures, chunk_file
from ensemble.rag.chunks import query_features as _query_features
from ensemble.rag.sources import SourceFile

MAX_FILE_SECONDS = 3600.0  # corpus tracks may be far longer than a user upload


@dataclass
class Analysed:
    """The result of analysing one source file: its chunks, or why it was skipped."""

    source: SourceFile
    sha256: str
    chunks: FileChunks | None
    skipped: str | None = None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def embedder_sha256(embedder: Embedder) -> str:
    """Checksum of the embedder's weights (sorted state dict), so a retrained model is noticed."""
    digest = hashlib.sha256(embedder.name.encode())
    model = getattr(embedder, "model", None)
    if model is not None:
        for key, tensor in sorted(model.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def check_embedder(config: FeatureConfig, embedder: Embedder, sha256: str | None = None) -> None:
    """Refuse an embedder other than the one the index was built with (IndexMismatchError)."""
    sha = sha256 or embedder_sha256(embedder)
    if sha != config.embedder_sha256:
        raise IndexMismatchError(
            f"The index was built with the embedding model '{config.embedder}' "
            f"(sha256 {config.embedder_sha256[:12]}), but this query uses '{embedder.name}' "
            f"(sha256 {sha[:12]}); query with the same model or rebuild the index."
        )


def hidden_states(embedder: Embedder, feats: FeatureFrame) -> np.ndarray:
    """(T, D) embedder states; unvoiced frames get f0 = 0 so the decoder fills them smoothly."""
    f0 = np.where(feats.voiced, feats.f0_hz, 0.0).astype(np.float32)
    return np.asarray(embedder.embed(f0, feats.loudness_db), np.float32)


def analyse_file(
    source: SourceFile, config: FeatureConfig, embedder: Embedder, threads: int = 2
) -> Analysed:
    """Chunks of one file; unreadable or silent files come back skipped with the reason.
    ``threads``: the pitch tracker's (1 when files are analysed in parallel)."""
    sha = file_sha256(source.path)
    try:
        audio = load_audio(source.path, max_seconds=MAX_FILE_SECONDS)
    except EnsembleError as exc:
        return Analysed(source, sha, None, skipped=str(exc))
    feats = extract_features(audio, threads)
    chunks = chunk_file(source.name, feats, hidden_states(embedder, feats), config)
    return Analysed(source, sha, chunks)


def analyse_query(
    audio: np.ndarray,
    config: FeatureConfig,
    embedder: Embedder,
    centre: np.ndarray,
    features: FeatureFrame | None = None,
) -> QueryFeatures:
    """Query features at the end of ``audio`` (N,) float32 mono at the index's sample rate,
    with style vectors centred on the index's ``centre`` (K,). ``features`` of ``audio``, when
    the caller already has them, are used instead of extracting them again."""
    feats = features if features is not None else extract_features(audio)
    return _query_features(feats, hidden_states(embedder, feats), config, centre)
