"""Audio RAG benchmarks, each against baselines measured in the same run.

Usage: python bench/rag.py [--corpus data/corpus] [--embedder violin|FOLDER] [--step 2]
                           [--sizes 1e4,1e5,1e6] [--skip-ray] [--skip-latency] [--repeats 3]
                           [--workdir DIR] [--split test|validation|train]

1. Build throughput (× real time) of the whole corpus index, local engine vs Ray engine (median
   of --repeats builds each, with the range).
2. Continuation recall@1/@10 on the held-out test-split tracks (whose audio is in the index;
   --split validation or train for tuning runs):
   query with the prefix [0, P) of a track for P = 10 s, 10 + step, ...; chunks overlapping the
   prefix are excluded; a hit is a chunk of the same track starting within one hop of P.
   Baselines: random chunks, and chroma-only cosine (mean chroma of the query's last chunk length
   vs each chunk's mean chroma: "what sounds like the input's ending").
   Ablations: relevance only (no seam parts), and exhaustive rerank (no stage-1 shortlist).
   Seams: for the Top-5 of each query, the beat-phase error of the seam on the corpus's exact
   beats (metadata.yaml), with the beat-aligned start and with the indexed chunk start.
3. Top-10 latency at 10^4..10^6 chunks on synthetic clustered style vectors of the real dimension:
   stage 1 (FAISS, the index's own choice of flat/IVF) + stage 2 (exact rerank of 200 candidates,
   measured on the corpus index; independent of N) vs numpy brute force, and stage-1 recall@10
   against the exact neighbours.

Without trained checkpoints the embedder is an untrained decoder (seeded); the bench says which.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from threadpoolctl import threadpool_limits

from ensemble.audio import load_audio
from ensemble.config import FRAME_RATE, SAMPLE_RATE
from ensemble.errors import CheckpointError
from ensemble.features import extract_features
from ensemble.instrument import Instrument, InstrumentConfig
from ensemble.rag import build_index, open_index
from ensemble.rag.analyse import MAX_FILE_SECONDS, hidden_states
from ensemble.rag.build import DEFAULT_EMBEDDER
from ensemble.rag.chunks import query_features
from ensemble.rag.continuation import plan_chain
from ensemble.rag.index import RagIndex, build_vector_index, one_faiss_thread
from ensemble.rag.multihop import beam_search
from ensemble.rag.scoring import COHERENCE_PARTS, DEFAULT_WEIGHTS
from ensemble.rag.search import Span, query_after, score_rows

TOP_K = 10
CANDIDATES = 200
SEAM_TOP = 5  # seams whose beat phase is checked against the corpus's exact beats


def load_embedder(name: str) -> tuple[Instrument, str]:
    try:
        return Instrument.from_pretrained(name), f"checkpoint {name}"
    except CheckpointError:
        import torch

        torch.manual_seed(0)
        return Instrument(InstrumentConfig(name=name)), f"untrained {name} decoder (seed 0)"


def bench_build(
    corpus: Path, embedder: Instrument, workdir: Path, skip_ray: bool, repeats: int
) -> dict:
    """Index the corpus ``repeats`` times with each engine (this machine is shared and noisy, so
    the median run and the range are reported); the last local index is reused for recall."""
    extract_features(np.random.default_rng(0).normal(0, 0.1, SAMPLE_RATE).astype(np.float32))
    out = {}
    for engine in ("local", "ray"):
        if engine == "ray" and skip_ray:
            continue
        target = workdir / f"index-{engine}"
        runs = []
        for _ in range(repeats):
            shutil.rmtree(target, ignore_errors=True)
            cpu = time.process_time()  # this process's threads; Ray's work runs elsewhere
            report = build_index(
                corpus, target, embedder=embedder, engine=engine, workers=os.cpu_count(),
                progress=False,
            )
            runs.append((report, time.process_time() - cpu))
        runs.sort(key=lambda run: run[0].realtime_factor)
        report, cpu = runs[len(runs) // 2]
        out[engine] = {
            "files": report.files_added,
            "chunks": report.chunks_added,
            "audio_minutes": report.audio_seconds / 60,
            "seconds": report.total_seconds,
            "x_realtime": report.realtime_factor,
            "x_realtime_runs": [run.realtime_factor for run, _ in runs],
            "x_realtime_analysis_only": report.audio_seconds / report.analyse_seconds,
        }
        if engine == "local":  # load-independent: audio seconds per CPU second
            out[engine]["x_realtime_per_cpu_second"] = report.audio_seconds / cpu
    return out


def is_hit(index: RagIndex, rows: np.ndarray, track: str, point: float) -> np.ndarray:
    names = np.array([index.source(int(r)) for r in rows])
    return (names == track) & (np.abs(index.start_s[rows] - point) <= index.config.hop_seconds)


def bench_recall(
    index: RagIndex, corpus: Path, embedder: Instrument, step: float, split: str = "test"
) -> dict:
    splits = json.loads((corpus / "splits.json").read_text())
    tracks = {f.name: f for f in index.files if f.name in set(splits[split])}
    config, rng = index.config, np.random.default_rng(0)
    names = np.array([index.source(i) for i in range(len(index))])
    chroma = index.seams.chroma_mean / np.maximum(
        np.linalg.norm(index.seams.chroma_mean, axis=1, keepdims=True), 1e-9
    )
    no_seams = {**DEFAULT_WEIGHTS, **dict.fromkeys(COHERENCE_PARTS, 0.0)}
    truth = {f.name: yaml.safe_load((corpus / f.name / "metadata.yaml").read_text())
              for f in index.files}  # fmt: skip
    phase_ms: dict[str, list[float]] = {"aligned": [], "chunk start": []}
    same_track: list[bool] = []  # whether each checked seam comes from the query's own track
    methods = (
        "ours",
        "ours: relevance only",
        "ours: exhaustive rerank",
        "chroma-only cosine",
        "random",
    )
    hits = {m: [] for m in methods}
    timings = []
    for track, record in tracks.items():
        audio = load_audio(index.root / record.path, max_seconds=MAX_FILE_SECONDS)
        last = record.duration_s - config.chunk_seconds
        for point in np.arange(10.0, last + 1e-9, step):
            begin = time.perf_counter()
            feats = extract_features(audio[: int(point * SAMPLE_RATE)])
            query = query_features(feats, hidden_states(embedder, feats), config, index.centre)
            exclude = [Span(track, 0.0, float(point))]
            chains = beam_search(index, query, top_k=TOP_K, exclude=exclude)
            timings.append(time.perf_counter() - begin)
            hits["ours"].append(is_hit(index, np.array([c.rows[0] for c in chains]), track, point))
            for chain in chains[:SEAM_TOP]:
                plan = plan_chain(index, query, chain, config.chunk_seconds, exclude)[0]
                source = truth[index.source(chain.rows[0])]
                same_track.append(index.source(chain.rows[0]) == track)
                starts = {"aligned": plan.start_s, "chunk start": index.start_s[chain.rows[0]]}
                for label, start in starts.items():
                    phase_ms[label].append(
                        seam_phase_error_ms(truth[track], point, source, float(start))
                    )
            for name, kwargs in (
                ("ours: relevance only", {"weights": no_seams}),
                ("ours: exhaustive rerank", {"candidates": len(index)}),
            ):
                chains = beam_search(index, query, top_k=TOP_K, exclude=exclude, **kwargs)
                rows = np.array([c.rows[0] for c in chains])
                hits[name].append(is_hit(index, rows, track, point))
            allowed = ~((names == track) & (index.start_s < point))
            tail = feats.chroma[:, -int(config.chunk_seconds * FRAME_RATE) :].mean(axis=1)
            cosine = np.where(allowed, chroma @ (tail / max(np.linalg.norm(tail), 1e-9)), -np.inf)
            hits["chroma-only cosine"].append(
                is_hit(index, np.argsort(-cosine)[:TOP_K], track, point)
            )
            draws = [rng.choice(np.flatnonzero(allowed), TOP_K, replace=False) for _ in range(50)]
            hits["random"].append(np.mean([is_hit(index, d, track, point) for d in draws], axis=0))
    out = {"queries": len(hits["ours"]), "tracks": sorted(tracks), "methods": {}}
    for name in methods:
        table = np.array(hits[name], float)  # (Q, K): hit at each rank (random: probability)
        out["methods"][name] = {
            "recall@1": float(table[:, 0].mean()),
            "recall@10": float(np.minimum(table.sum(axis=1), 1.0).mean()),
        }
    out["query_seconds_median"] = float(np.median(timings))
    same = np.array(same_track, bool)
    out["seam_phase"] = {
        label: {
            "within_35ms": float(np.mean(np.abs(errors) <= 35.0)),
            "median_abs_ms": float(np.median(np.abs(errors))),
            "seams": len(errors),
            "within_35ms_same_track": float(np.mean(np.abs(np.array(errors)[same]) <= 35.0)),
            "within_35ms_other_tracks": float(np.mean(np.abs(np.array(errors)[~same]) <= 35.0)),
            "same_track_share": float(same.mean()),
        }
        for label, errors in phase_ms.items()
    }
    return out


def beat_phase(meta: dict, t: float) -> tuple[float, float]:
    """(fraction of the beat, beat length in s) at ``t`` from a track's exact beats."""
    beats = np.asarray(meta["beats_s"])
    k = int(np.clip(np.searchsorted(beats, t, side="right") - 1, 0, len(beats) - 2))
    length = float(beats[k + 1] - beats[k])
    return (t - beats[k]) / length, length


def seam_phase_error_ms(query: dict, point: float, source: dict, start: float) -> float:
    """How far (ms, at the query's beat length) the seam's place in the beat is from the
    query's, on the corpus's exact beats: 0 when the continuation starts on the same fraction
    of a beat where the query stops."""
    query_phase, beat_s = beat_phase(query, point)
    source_phase, _ = beat_phase(source, start)
    offset = (source_phase - query_phase + 0.5) % 1.0 - 0.5
    return float(offset * beat_s * 1000.0)


def clustered_vectors(n: int, d: int, seed: int = 0) -> np.ndarray:
    """(n, d) unit vectors in 2000 clusters (members' cosine ~0.7, like the chunks of one track),
    built in blocks. The same seed gives the same clusters, so queries can share them."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(2000, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, d), np.float32)
    sigma = np.sqrt(0.43 / d)
    for lo in range(0, n, 100_000):
        hi = min(n, lo + 100_000)
        block = centres[rng.integers(0, 2000, hi - lo)]
        block += rng.normal(0.0, sigma, size=block.shape).astype(np.float32)
        out[lo:hi] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def latency_at(n: int, d: int, n_queries: int) -> dict:
    """Stage-1 and brute-force timings (median ms) over ``n`` synthetic vectors.

    Queries are held-out draws from the same clusters. Both sides run on one thread (a single
    query has too little work to share; see `one_faiss_thread`).
    """
    both = clustered_vectors(n + n_queries, d)
    vectors, queries = both[:n], both[n:]
    begin = time.perf_counter()
    stage1 = build_vector_index(vectors)
    build_s = time.perf_counter() - begin
    faiss_ms, brute_ms, top10, shortlist = [], [], [], []
    with threadpool_limits(1), one_faiss_thread():
        for q in queries:
            begin = time.perf_counter()
            _, found = stage1.search(q[None], CANDIDATES)
            faiss_ms.append((time.perf_counter() - begin) * 1e3)
            begin = time.perf_counter()
            exact = np.argpartition(-(vectors @ q), TOP_K)[:TOP_K]
            brute_ms.append((time.perf_counter() - begin) * 1e3)
            exact_set = set(exact.tolist())
            top10.append(len(exact_set & set(found[0][:TOP_K].tolist())) / TOP_K)
            shortlist.append(len(exact_set & set(found[0].tolist())) / TOP_K)
    return {
        "index": type(stage1).__name__,
        "build_s": build_s,
        "stage1_ms": float(np.median(faiss_ms)),
        "numpy_brute_force_ms": float(np.median(brute_ms)),
        "stage1_recall@10_vs_exact": float(np.mean(top10)),
        "exact_top10_in_candidates": float(np.mean(shortlist)),
    }


def bench_latency(index: RagIndex, sizes: list[int], n_queries: int = 100) -> dict:
    d = index.context.take(index.ctx_start[:1]).shape[-1]
    # Stage 2 is the same whatever N: the exact rerank of CANDIDATES rows of the real index.
    rows = np.arange(min(CANDIDATES, len(index)))
    query = query_after(index, 0)
    stage2 = []
    for _ in range(20):
        begin = time.perf_counter()
        score_rows(index, query, rows, DEFAULT_WEIGHTS)
        stage2.append((time.perf_counter() - begin) * 1e3)
    out = {"dim": d, "stage2_ms": float(np.median(stage2)), "sizes": {}}
    for n in sizes:
        row = latency_at(n, d, n_queries)
        row["top10_ms"] = row["stage1_ms"] + out["stage2_ms"]
        out["sizes"][n] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    parser.add_argument("--embedder", default=DEFAULT_EMBEDDER)
    parser.add_argument("--step", type=float, default=2.0, help="seconds between query points")
    parser.add_argument("--sizes", default="1e4,1e5,1e6")
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--repeats", type=int, default=3, help="builds per engine (median)")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--workdir", type=Path, help="where the indexes go (default: a temp dir)")
    parser.add_argument("--split", default="test", help="whose tracks query (tune on others)")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="rag-bench-"))
    embedder, described = load_embedder(args.embedder)
    print(f"embedder: {described}; corpus: {args.corpus}; cores: {os.cpu_count()}")
    report: dict = {"embedder": described}

    report["build"] = bench_build(args.corpus, embedder, workdir, args.skip_ray, args.repeats)
    for engine, row in report["build"].items():
        runs = row["x_realtime_runs"]
        print(
            f"build {engine:5s}: {row['files']} files, {row['chunks']} chunks, "
            f"{row['audio_minutes']:.1f} min audio in {row['seconds']:.1f} s = "
            f"{row['x_realtime']:.0f}x real time (median of {len(runs)} builds, "
            f"{min(runs):.0f}-{max(runs):.0f}x; {row['x_realtime_analysis_only']:.0f}x "
            "for the analysis alone"
            + (
                f"; {row['x_realtime_per_cpu_second']:.0f} s of audio per CPU second)"
                if "x_realtime_per_cpu_second" in row
                else ")"
            )
        )
    print(f"load average during the run: {os.getloadavg()}")
    index = open_index(workdir / "index-local")
    report["recall"] = bench_recall(index, args.corpus, embedder, args.step, args.split)
    recall = report["recall"]
    print(f"recall on {recall['queries']} queries from {args.split} tracks {recall['tracks']}:")
    for name, row in recall["methods"].items():
        print(f"  {name:26s} recall@1 {row['recall@1']:.3f}  recall@10 {row['recall@10']:.3f}")
    print(f"  query (features + embed + search), median: {recall['query_seconds_median']:.2f} s")
    for label, row in recall["seam_phase"].items():
        print(f"  seams of the Top-{SEAM_TOP}, {label:11s}: |phase error| <= 35 ms for "
              f"{row['within_35ms']:.1%} of {row['seams']}, median {row['median_abs_ms']:.0f} ms "
              f"(own track {row['within_35ms_same_track']:.1%}, {row['same_track_share']:.0%} "
              f"of seams; other tracks {row['within_35ms_other_tracks']:.1%})")

    if not args.skip_latency:
        sizes = [int(float(s)) for s in args.sizes.split(",")]
        report["latency"] = bench_latency(index, sizes)
        lat = report["latency"]
        print(f"Top-10 latency, d = {lat['dim']}, stage 2 = {lat['stage2_ms']:.2f} ms:")
        for n, row in lat["sizes"].items():
            print(
                f"  N={n:>8d} {row['index']:12s} build {row['build_s']:6.1f} s  stage1 "
                f"{row['stage1_ms']:6.2f} ms  top10 {row['top10_ms']:6.2f} ms  numpy "
                f"{row['numpy_brute_force_ms']:7.2f} ms  stage-1 recall@10 "
                f"{row['stage1_recall@10_vs_exact']:.3f}, exact top-10 among the "
                f"{CANDIDATES} candidates {row['exact_top10_in_candidates']:.3f}"
            )
    print(json.dumps({"rag": report}))


if __name__ == "__main__":
    main()
