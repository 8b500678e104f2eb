"""Audio RAG end to end on audio the tests synthesise: build, query, render, add, crash, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ensemble.audio import resample, write_audio
from ensemble.cli import main
from ensemble.config import SAMPLE_RATE
from ensemble.errors import AudioInputError, EnsembleError, IndexMismatchError
from ensemble.instrument import Instrument, InstrumentConfig
from ensemble.rag import (
    Lineup,
    Span,
    build_index,
    open_index,
    render_continuations,
    retrieve,
    write_continuations,
)
from ensemble.rag.render import equal_power_fades, read_segment, stitch

SECONDS = 12.0  # per file: chunks start at 1..8 s with the default 4 s chunk, 1 s hop


def melody(seed: int, seconds: float = SECONDS) -> np.ndarray:
    """A plucked melody in a random major key and register: distinct per seed, music-like."""
    rng = np.random.default_rng(seed)
    root = rng.uniform(180.0, 420.0)
    degrees = np.array([0, 2, 4, 5, 7, 9, 11, 12])
    notes, total = [], 0
    while total < seconds * SAMPLE_RATE:
        n = int(rng.choice([0.25, 0.5, 0.5, 1.0]) * SAMPLE_RATE)
        f0 = root * 2 ** (rng.choice(degrees) / 12)
        t = np.arange(n) / SAMPLE_RATE
        envelope = np.minimum(1.0, t / 0.02) * np.exp(-t * rng.uniform(1.0, 4.0))
        notes.append(envelope * sum(0.5 / k * np.sin(2 * np.pi * k * f0 * t) for k in (1, 2, 3)))
        total += n
    return (0.6 * np.concatenate(notes)[: int(seconds * SAMPLE_RATE)]).astype(np.float32)


def untrained(seed: int = 0) -> Instrument:
    """A small untrained decoder: its GRU is a real (if arbitrary) style embedding."""
    torch.manual_seed(seed)
    stats = {"pitch_midi_mean": 67.0, "loudness_quantiles": list(np.linspace(-70, -15, 21))}
    config = InstrumentConfig(
        name="violin", hidden_size=32, gru_layers=1, n_harmonics=8, n_noise_bands=16, stats=stats
    )
    return Instrument(config)


@pytest.fixture(scope="module")
def embedder() -> Instrument:
    return untrained()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Slakh-layout corpus: three tracks (mix.flac) and splits.json."""
    root = tmp_path_factory.mktemp("corpus")
    for i in range(3):
        write_audio(root / f"Track0000{i + 1}" / "mix.flac", melody(i))
    splits = {"train": ["Track00001", "Track00002"], "validation": [], "test": ["Track00003"]}
    (root / "splits.json").write_text(json.dumps(splits))
    return root


@pytest.fixture(scope="module")
def index_dir(corpus: Path, embedder: Instrument, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("index") / "idx"
    report = build_index(corpus, out, embedder=embedder, progress=False)
    assert report.files_added == 3 and report.chunks_added == 24
    return out


def test_build_records_chunks_config_and_files(index_dir: Path) -> None:
    index = open_index(index_dir)
    assert len(index) == 24
    assert [f.name for f in index.files] == ["Track00001", "Track00002", "Track00003"]
    assert [f.split for f in index.files] == ["train", "train", "test"]
    assert index.chunk_id(0) == "Track00001@1s"
    assert index.source_path(0).name == "mix.flac" and index.source_path(0).is_file()
    config = json.loads((index.version / "config.json").read_text())["features"]
    assert config["chunk_seconds"] == 4.0 and config["lookbacks_s"] == [7.0, 7.5, 8.0, 8.5]
    assert config["sample_rate"] == SAMPLE_RATE and len(config["embedder_sha256"]) == 64
    context = index.context.take(index.ctx_start[:3])
    assert context.shape[:2] == (3, 4)
    assert np.linalg.norm(context, axis=-1) == pytest.approx(1.0, abs=1e-2)


def test_parallel_local_build_matches_one_worker(
    corpus: Path, index_dir: Path, embedder: Instrument, tmp_path: Path
) -> None:
    parallel = open_index(index_dir)  # built with all cores' worth of threads
    serial = build_index(corpus, tmp_path / "serial", embedder=embedder, workers=1, progress=False)
    one = serial.index
    assert [f.name for f in one.files] == [f.name for f in parallel.files]  # source order kept
    assert [one.chunk_id(i) for i in range(len(one))] == [
        parallel.chunk_id(i) for i in range(len(parallel))
    ]
    assert one.seams.f0_start == pytest.approx(parallel.seams.f0_start, rel=1e-4)
    assert one.context.take(one.ctx_start) == pytest.approx(
        parallel.context.take(parallel.ctx_start), abs=1e-4
    )


def test_query_finds_the_true_continuation_and_skips_the_prefix(
    index_dir: Path, embedder: Instrument
) -> None:
    prefix = melody(1)[: 7 * SAMPLE_RATE]  # Track00002 up to 7 s
    exclude = [Span("Track00002", 0.0, 7.0)]
    found = retrieve(prefix, index_dir, top_k=5, embedder=embedder, exclude=exclude)
    results = render_continuations(found)
    assert [r.rank for r in results] == [1, 2, 3, 4, 5]
    assert results[0].chunk_ids == ["Track00002@7s"]  # the true next chunk comes first
    composites = [r.composite for r in results]
    assert composites == sorted(composites, reverse=True)
    for r in results:  # nothing overlapping the query's own material
        segment = r.segments[0]
        assert not (segment.source == "Track00002" and segment.start_s < 7.0)
        assert set(r.parts) == {
            "relevance",
            "pitch_coherence",
            "chroma_coherence",
            "loudness_coherence",
            "rhythm_coherence",
        }
        assert r.audio is not None and len(r.audio) == 8 * SAMPLE_RATE  # 4 s tail + 4 s chunk
        assert r.mix is None  # no lineup: raw audio only
    assert found.notes == []


def test_precomputed_features_give_the_same_ranking(index_dir: Path, embedder: Instrument) -> None:
    from ensemble.features import extract_features

    prefix = melody(1)[: 7 * SAMPLE_RATE]
    exclude = [Span("Track00002", 0.0, 7.0)]
    fresh = retrieve(prefix, index_dir, top_k=3, embedder=embedder, exclude=exclude).continuations
    reused = retrieve(
        prefix,
        index_dir,
        top_k=3,
        embedder=embedder,
        exclude=exclude,
        features=extract_features(prefix),
    ).continuations
    assert [r.chunk_ids for r in reused] == [r.chunk_ids for r in fresh]
    assert [r.composite for r in reused] == pytest.approx([r.composite for r in fresh])


def test_top_k_candidates_do_not_overlap_each_other(index_dir: Path, embedder: Instrument) -> None:
    results = retrieve(
        melody(1)[: 7 * SAMPLE_RATE],
        index_dir,
        top_k=4,
        embedder=embedder,
        exclude=[Span("Track00002", 0.0, 7.0)],
    ).continuations
    spans = [(r.segments[0].source, r.segments[0].start_s) for r in results]
    for i, (source, start) in enumerate(spans):
        for other_source, other_start in spans[i + 1 :]:
            assert source != other_source or abs(start - other_start) >= 4.0


def test_ranking_json_and_audio_files(
    index_dir: Path, embedder: Instrument, tmp_path: Path
) -> None:
    found = retrieve(melody(7, 9.0), index_dir, top_k=3, embedder=embedder)
    path = write_continuations(tmp_path, render_continuations(found), notes=found.notes,
                               meta={"input": "x"})
    ranking = json.loads(path.read_text())
    assert ranking["notes"] == found.notes
    first = ranking["candidates"][0]
    for key in ("rank", "chunk_id", "source", "start_s", "relevance", "coherence", "composite"):
        assert key in first
    assert set(first["parts"]) == set(first["scores"]) - {"relevance", "coherence", "composite"} | {
        "relevance"
    }
    assert (tmp_path / first["audio"]).is_file()
    assert len(list(tmp_path.glob("continuation_*.wav"))) == 3


def test_short_input_uses_the_context_it_has(index_dir: Path, embedder: Instrument) -> None:
    found = retrieve(melody(4, 3.0), index_dir, top_k=2, embedder=embedder)
    assert len(found.continuations) == 2 and found.continuations[0].audio is None
    assert "shorter than the shortest lookback" in found.notes[0]
    assert "3.0 s" in found.notes[0]


def test_too_short_input_is_refused(index_dir: Path, embedder: Instrument) -> None:
    with pytest.raises(AudioInputError, match=r"at least 0\.5 s"):
        retrieve(melody(4, 0.3), index_dir, embedder=embedder)


def test_another_embedder_is_refused(index_dir: Path) -> None:
    with pytest.raises(IndexMismatchError, match="embedding model"):
        retrieve(melody(4, 9.0), index_dir, embedder=untrained(seed=1))


def test_index_from_another_feature_version_is_refused(index_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "idx"
    shutil.copytree(index_dir, copy)
    config_path = open_index(copy).version / "config.json"
    meta = json.loads(config_path.read_text())
    meta["features"]["version"] = 0
    config_path.write_text(json.dumps(meta))
    with pytest.raises(IndexMismatchError, match="another feature configuration"):
        open_index(copy)


def test_add_with_other_chunking_is_refused(
    index_dir: Path, corpus: Path, embedder: Instrument
) -> None:
    with pytest.raises(IndexMismatchError, match="--chunk-seconds 2 differs"):
        build_index(corpus, index_dir, embedder=embedder, add=True, chunk_seconds=2.0)


def test_empty_index_gives_a_clear_message(tmp_path: Path, embedder: Instrument) -> None:
    write_audio(tmp_path / "src" / "short.wav", melody(5, 3.0))  # shorter than context + chunk
    report = build_index(tmp_path / "src", tmp_path / "idx", embedder=embedder, progress=False)
    assert len(report.index) == 0
    with pytest.raises(IndexMismatchError, match="holds no chunks"):
        retrieve(melody(5, 3.0), tmp_path / "idx", embedder=embedder)


def test_add_appends_new_files_and_keeps_ids(
    index_dir: Path, embedder: Instrument, tmp_path: Path
) -> None:
    copy = tmp_path / "idx"
    shutil.copytree(index_dir, copy)
    before = open_index(copy)
    old_ids = [before.chunk_id(i) for i in range(len(before))]
    write_audio(tmp_path / "more" / "new.wav", melody(9))
    report = build_index(tmp_path / "more", copy, embedder=embedder, add=True, progress=False)
    after = report.index
    assert report.files_added == 1 and len(after) == len(before) + 8
    assert [after.chunk_id(i) for i in range(len(before))] == old_ids
    assert after.chunk_id(len(before)) == "new@1s"
    old_part = after.version / "part-000" / "context.npy"
    assert old_part.stat().st_nlink >= 1  # reused (hard-linked or copied), not recomputed
    again = build_index(tmp_path / "more", copy, embedder=embedder, add=True, progress=False)
    assert again.files_added == 0 and "already in the index" in again.skipped[0]
    hits = retrieve(  # relevance alone locates the added file's true continuation
        melody(9)[: 6 * SAMPLE_RATE],
        copy,
        top_k=1,
        weights="pitch_coherence=0,chroma_coherence=0,loudness_coherence=0",
        embedder=embedder,
        exclude=[Span("new", 0, 6)],
    ).continuations
    assert hits[0].chunk_ids == ["new@6s"]


def test_crash_mid_build_leaves_the_old_index_usable(
    index_dir: Path, embedder: Instrument, tmp_path: Path
) -> None:
    copy = tmp_path / "idx"
    shutil.copytree(index_dir, copy)
    write_audio(tmp_path / "more" / "new.wav", melody(9))

    def crash(stage: str) -> None:
        if stage == "vectors":  # parts, files.json and vectors.faiss are already written
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        build_index(
            tmp_path / "more", copy, embedder=embedder, add=True, progress=False, on_stage=crash
        )
    assert list(copy.glob("v-*.partial"))  # the half-written version is there ...
    index = open_index(copy)  # ... but the live one is the old, complete one
    assert len(index) == 24
    assert retrieve(melody(3, 9.0), index, top_k=2, embedder=embedder).continuations
    build_index(tmp_path / "more", copy, embedder=embedder, add=True, progress=False)
    assert not list(copy.glob("v-*.partial")) and len(open_index(copy)) == 32


def test_multihop_never_reuses_material(index_dir: Path, embedder: Instrument) -> None:
    prefix = melody(0)[: 6 * SAMPLE_RATE]
    results = render_continuations(retrieve(
        prefix,
        index_dir,
        top_k=4,
        hops=3,
        embedder=embedder,
        exclude=[Span("Track00001", 0.0, 6.0)],
    ))
    assert len(results) == 4
    for r in results:
        spans = [(s.source, s.start_s) for s in r.segments]
        assert len(spans) == 3
        for i, (src_a, a) in enumerate(spans):
            assert not (src_a == "Track00001" and a < 6.0)
            for src_b, b in spans[i + 1 :]:
                assert src_a != src_b or abs(a - b) >= 4.0  # chunks are 4 s: no overlap
        assert r.audio is not None and len(r.audio) == (4 + 3 * 4) * SAMPLE_RATE
    assert len({tuple(r.chunk_ids) for r in results}) == 4


def test_multihop_chains_offered_together_share_no_material(
    index_dir: Path, embedder: Instrument
) -> None:
    results = retrieve(
        melody(0)[: 6 * SAMPLE_RATE], index_dir, top_k=2, hops=2, embedder=embedder
    ).continuations
    assert len(results) == 2
    first, second = ([(s.source, s.start_s) for s in r.segments] for r in results)
    for src_a, a in first:
        for src_b, b in second:
            assert src_a != src_b or abs(a - b) >= 4.0  # not even a shared opening
    assert results[0].composite >= results[1].composite


def test_multihop_stops_when_the_material_runs_out(index_dir: Path, embedder: Instrument) -> None:
    found = retrieve(melody(5, 9.0), index_dir, top_k=2, hops=12, embedder=embedder)
    hops = len(found.continuations[0].segments)
    assert 1 < hops < 12  # three 12 s tracks hold only a few non-overlapping 4 s chunks
    assert f"Only {hops} of 12 hops fit" in found.notes[-1]


def test_rendering_through_the_ensemble(
    index_dir: Path, embedder: Instrument, tmp_path: Path
) -> None:
    from ensemble.perform import Ensemble

    embedder.save(tmp_path / "ckpt" / "violin")
    ensemble = Ensemble.from_pretrained(tmp_path / "ckpt")
    found = retrieve(melody(2, 9.0), index_dir, top_k=1, embedder=embedder)
    results = render_continuations(found, Lineup(ensemble, ["violin"]))
    mix = results[0].mix
    assert mix is not None and mix.shape == (8 * SAMPLE_RATE, 2) and np.isfinite(mix).all()
    assert results[0].audio is not None and results[0].audio.shape == (8 * SAMPLE_RATE,)
    write_continuations(tmp_path / "out", results)
    written, _ = sf.read(tmp_path / "out" / "continuation_01.wav")
    assert written.shape == (8 * SAMPLE_RATE, 2)  # the performed mix is what is written
    assert sf.info(tmp_path / "out" / "continuation_01.wav").channels == 2


def test_stitch_is_equal_power_and_keeps_lengths() -> None:
    fade_out, fade_in = equal_power_fades(64)
    assert fade_out**2 + fade_in**2 == pytest.approx(np.ones(64), abs=1e-6)
    head, body = np.ones(100, np.float32), np.full(50, 2.0, np.float32)
    out = stitch(head, [(np.ones(10, np.float32), body)])
    assert len(out) == 150 and out[:90].tolist() == [1.0] * 90 and out[100:].tolist() == [2.0] * 50


def test_read_segment_pads_outside_the_file(tmp_path: Path) -> None:
    audio = melody(3, 2.0)
    write_audio(tmp_path / "a.wav", audio)
    segment = read_segment(tmp_path / "a.wav", -0.5, 1.0)
    assert len(segment) == SAMPLE_RATE and np.all(segment[: SAMPLE_RATE // 2] == 0)
    assert segment[SAMPLE_RATE // 2 :] == pytest.approx(audio[: SAMPLE_RATE // 2], abs=1e-4)


def test_cli_build_and_continue(corpus: Path, embedder: Instrument, tmp_path: Path, capsys) -> None:
    ckpt = embedder.save(tmp_path / "violin")
    out = tmp_path / "idx"
    assert (
        main(["index", "build", str(corpus), "--out", str(out), "--embedder", str(ckpt), "--quiet"])
        == 0
    )
    assert "24 chunks" in capsys.readouterr().out
    write_audio(tmp_path / "more" / "new.wav", melody(9))
    # --add without --embedder embeds with the index's own model, not the default one.
    assert main(["index", "build", str(tmp_path / "more"), "--out", str(out), "--add"]) == 0
    assert "32 chunks" in capsys.readouterr().out
    query = corpus / "Track00003" / "mix.flac"  # an indexed file: its own chunks are excluded
    rc = main(
        [
            "continue",
            str(query),
            "--index",
            str(out),
            "--out",
            str(tmp_path / "res"),
            "--top-k",
            "3",
            "--weights",
            "relevance=1,pitch_coherence=0.3",
            "--seconds",
            "6",
        ]
    )
    assert rc == 0
    ranking = json.loads((tmp_path / "res" / "ranking.json").read_text())
    assert ranking["excluded"] == ["Track00003"] and ranking["weights"]["pitch_coherence"] == 0.3
    assert all(c["source"] != "Track00003" for c in ranking["candidates"])
    assert len(ranking["candidates"]) == 3 and ranking["seconds"] == 6.0
    for c in ranking["candidates"]:  # the input's last 4 s, then 6 s of continuation
        assert c["seam_s"] == 4.0 and c["tempo_ratio"] > 0 and c["phase_error_ms"] >= 0
        assert sf.info(str(tmp_path / "res" / c["audio"])).duration == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["continue", "{audio}", "--index", "{tmp}/none", "--out", "{tmp}/o"], "No RAG index"),
        (
            ["index", "build", "{tmp}/nowhere", "--out", "{tmp}/i", "--embedder", "{ckpt}"],
            "does not exist",
        ),
        (["index", "build", "{tmp}", "--out", "{audio}", "--embedder", "{ckpt}"], "is a file"),
        (
            [
                "continue",
                "{audio}",
                "--index",
                "{tmp}/none",
                "--out",
                "{tmp}/o",
                "--weights",
                "pitch=1",
            ],
            "Unknown score weight",
        ),
        (
            ["continue", "{audio}", "--index", "{tmp}/none", "--out", "{tmp}/o", "--seconds", "2"],
            "between 4 and 30",
        ),
        (
            ["continue", "{audio}", "--index", "{tmp}/i", "--out", "{tmp}/o", "--seconds", "nan"],
            "between 4 and 30",
        ),
        (
            ["continue", "{audio}", "--index", "{tmp}/none", "--out", "{tmp}/o", "--top-k", "0"],
            "--top-k: '0' is out of range; give a number between 1 and 8",
        ),
        (
            ["continue", "{audio}", "--index", "{tmp}/none", "--out", "{tmp}/o", "--leader", "x"],
            "--leader needs --instruments",
        ),
        (
            ["index", "build", "{tmp}", "--out", "{tmp}/i", "--embedder", "nonexistent"],
            "No instrument checkpoint",
        ),
    ],
)
def test_cli_errors_are_one_readable_line(
    argv: list[str], message: str, embedder: Instrument, tmp_path: Path, capsys
) -> None:
    write_audio(tmp_path / "in.wav", melody(1, 2.0))
    ckpt = embedder.save(tmp_path / "violin")
    args = [a.format(tmp=tmp_path, audio=tmp_path / "in.wav", ckpt=ckpt) for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err
    assert "\n" not in err and "Traceback" not in err


def test_build_refuses_a_foreign_folder(tmp_path: Path, corpus: Path, embedder: Instrument) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(EnsembleError, match="not an Ensemble index"):
        build_index(corpus, tmp_path, embedder=embedder)


def test_raw_continuations_keep_the_quality_of_their_sources(
    embedder: Instrument, tmp_path: Path
) -> None:
    """Sources at 44.1 kHz with a band above 8 kHz: a raw continuation is stitched at 44.1 kHz
    and keeps that band (resampled once, from the file); the query's own analysis stays at
    16 kHz, and so do continuations meant for a song."""
    hifi = 44_100
    for i in range(3):
        base = resample(melody(i), SAMPLE_RATE, hifi)
        t = np.arange(len(base)) / hifi
        air = 0.05 * np.sin(2 * np.pi * 11_000 * t).astype(np.float32)
        write_audio(tmp_path / "src" / f"Track0000{i + 1}" / "mix.flac", base + air, hifi)
    build_index(tmp_path / "src", tmp_path / "idx", embedder=embedder, progress=False)
    query = tmp_path / "query.wav"
    write_audio(query, melody(7, 9.0))
    found = retrieve(query, tmp_path / "idx", top_k=2, embedder=embedder)
    assert found.output_rate() == hifi
    raw = render_continuations(found, rate=hifi)[0]
    assert raw.audio_rate == hifi and len(raw.audio) == round((4.0 + found.seconds) * hifi)
    material = raw.audio[round(4.5 * hifi) :]
    power = np.abs(np.fft.rfft(material)) ** 2
    freqs = np.fft.rfftfreq(len(material), 1 / hifi)
    assert power[(freqs > 10_500) & (freqs < 11_500)].sum() > 1e-3 * power.sum()
    assert render_continuations(found)[0].audio_rate == SAMPLE_RATE  # for a song: analysis rate
