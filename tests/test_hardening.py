"""Issue 15, one test per fault: real files the tests write, each refusal exit 2 with one line on
stderr and no traceback, and no stale, partial or temporary output left behind."""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ensemble.audio import load_audio, write_audio
from ensemble.cli import main
from ensemble.config import SAMPLE_RATE
from ensemble.errors import EnsembleError
from ensemble.instrument import Instrument
from ensemble.outputs import replace_folder
from ensemble.rag import PART_NAMES, build_index, open_index
from ensemble.rag.store import VECTORS_FILE, build_lock, live_version
from tests.test_perform import checkpoints  # noqa: F401  (fixture)
from tests.test_rag import melody, untrained


def refused(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> str:
    """Run the CLI; it must exit 2 with exactly one 'error: ...' line containing ``needle``."""
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert "Traceback" not in err and needle in err, err
    return err


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders our writers create beside their targets."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".tmp", ".old")))


@pytest.fixture(scope="module")
def embedder() -> Instrument:
    return untrained()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, embedder: Instrument) -> tuple[Path, Path]:
    """(index folder, embedder checkpoint folder) of a two-file index."""
    root = tmp_path_factory.mktemp("hard")
    for i in range(2):
        write_audio(root / "audio" / f"m{i}.wav", melody(i))
    ckpt = embedder.save(root / "emb")
    build_index(root / "audio", root / "index", embedder=str(ckpt), progress=False)
    return root / "index", ckpt


@pytest.fixture
def index_copy(built: tuple[Path, Path], tmp_path: Path) -> Path:
    """A private copy of the index that a test may damage."""
    return Path(shutil.copytree(built[0], tmp_path / "index"))


@pytest.fixture
def query(tmp_path: Path) -> Path:
    path = tmp_path / "q.wav"
    write_audio(path, melody(7, 9.0))
    return path


def continue_args(query: Path, index: Path, out: Path, *extra: str) -> list[str]:
    return ["continue", str(query), "--index", str(index), "--out", str(out), "--no-audio", *extra]


# -- outputs: checked first, whole or absent --------------------------------------------------


@pytest.mark.parametrize("command", ["perform", "continue", "index", "train", "train-conductor"])
def test_out_that_is_a_file_is_refused_before_any_work(
    command: str, tmp_path: Path, query: Path, built: tuple[Path, Path], capsys
) -> None:
    target = tmp_path / "some_file.txt"
    target.write_text("mine")
    argv = {
        "perform": ["perform", query, "--out", target],
        "continue": continue_args(query, built[0], target),
        "index": ["index", "build", query, "--out", target],
        "train": ["train", "instrument", "--data", tmp_path, "--instrument", "violin",
                  "--out", target],
        "train-conductor": ["train", "conductor", "--data", tmp_path, "--out", target],
    }[command]  # fmt: skip
    refused(capsys, argv, "is a file")
    assert target.read_text() == "mine"


def test_out_below_a_file_is_refused(tmp_path: Path, query: Path, capsys) -> None:
    (tmp_path / "f.txt").write_text("x")
    refused(capsys, ["perform", query, "--out", tmp_path / "f.txt" / "out"], "is a file")


def test_a_folder_of_other_files_is_never_replaced(tmp_path: Path, query: Path, capsys) -> None:
    out = tmp_path / "music"
    out.mkdir()
    (out / "song.mp3").write_text("precious")
    refused(capsys, ["perform", query, "--out", out], "did not write")
    assert (out / "song.mp3").read_text() == "precious"


def test_reused_out_holds_only_the_new_run(
    checkpoints: Path,  # noqa: F811
    tmp_path: Path,
    query: Path,
    capsys,
) -> None:
    out = tmp_path / "out"
    base = ["perform", query, "--out", out, "--checkpoints", checkpoints]
    assert main([str(a) for a in [*base, "--instruments", "violin,cello,drums"]]) == 0
    assert main([str(a) for a in [*base, "--instruments", "violin"]]) == 0
    assert sorted(p.name for p in (out / "stems").iterdir()) == ["violin.wav"]
    assert json.loads((out / "metrics.json").read_text())["instruments"] == ["violin"]
    assert leftovers(tmp_path) == []
    capsys.readouterr()


def test_several_inputs_share_one_call(
    checkpoints: Path,  # noqa: F811
    tmp_path: Path,
    query: Path,
) -> None:
    second = tmp_path / "other" / "q.wav"  # the same file name: numbered, not overwritten
    write_audio(second, melody(8, 3.0))
    out = tmp_path / "out"
    argv = ["perform", query, second, "--out", out, "--checkpoints", checkpoints,
            "--instruments", "violin"]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    assert (out / "q" / "mix.wav").is_file() and (out / "q~2" / "mix.wav").is_file()
    assert json.loads((out / "q~2" / "metrics.json").read_text())["input"] == str(second)


def test_continue_takes_several_inputs(
    built: tuple[Path, Path], tmp_path: Path, query: Path
) -> None:
    second = tmp_path / "b.wav"
    write_audio(second, melody(9, 9.0))
    out = tmp_path / "out"
    argv = ["continue", query, second, "--index", built[0], "--out", out, "--no-audio"]
    assert main([str(a) for a in argv]) == 0
    for name, source in (("q", query), ("b", second)):
        ranking = json.loads((out / name / "ranking.json").read_text())
        assert ranking["input"] == str(source) and ranking["candidates"]


def test_a_failure_leaves_the_old_folder_and_no_temporary(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with replace_folder(out, command="perform") as tmp:
        (tmp / "metrics.json").write_text("old")
    with pytest.raises(RuntimeError), replace_folder(out, command="perform") as tmp:
        (tmp / "metrics.json").write_text("half")
        raise RuntimeError("crash mid-write")
    assert (out / "metrics.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_outputs_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        with replace_folder(tmp_path / "out", command="perform") as tmp:
            (tmp / "a.txt").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o750


# -- audio: the header first ---------------------------------------------------------------


def test_long_file_refused_from_its_header_without_reading_it(tmp_path: Path, capsys) -> None:
    import tracemalloc

    # 130 s of NaN samples (8 MB): reading them would say "NaN"; the header alone says too long.
    path = tmp_path / "long.wav"
    sf.write(path, np.full(130 * SAMPLE_RATE, np.nan, np.float32), SAMPLE_RATE, subtype="FLOAT")
    tracemalloc.start()
    try:
        refused(capsys, ["perform", path, "--out", tmp_path / "o"], "130.0 s long")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000 and not (tmp_path / "o").exists()
    sf.write(path, melody(4, 130.0), SAMPLE_RATE)
    assert len(load_audio(path, trim=True, max_seconds=2.0)) == 2 * SAMPLE_RATE


# -- index ------------------------------------------------------------------------------------


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _wrong_dimension(path: Path) -> None:
    from ensemble.rag.index import build_vector_index, load_faiss

    vectors = np.eye(4, 16, dtype=np.float32)
    load_faiss().write_index(build_vector_index(vectors), str(path))


DAMAGE: dict[str, tuple[str, Callable[[Path], None]]] = {
    "truncated vectors": (VECTORS_FILE, _truncate),
    "garbage vectors": (VECTORS_FILE, lambda p: p.write_bytes(b"not a faiss index" * 10)),
    "wrong-dimension vectors": (VECTORS_FILE, _wrong_dimension),
    "truncated chunks": ("part-000/chunks.npz", _truncate),
    "bad centre": ("centre.npy", lambda p: np.save(p, np.full(3, np.nan))),
    "hop 0": ("config.json", lambda p: p.write_text(
        p.read_text().replace('"hop_seconds": 1.0', '"hop_seconds": 0'))),
}  # fmt: skip


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_index_files_are_refused_when_opened(
    damage: str, index_copy: Path, query: Path, tmp_path: Path, capsys
) -> None:
    name, spoil = DAMAGE[damage]
    target = live_version(index_copy) / name
    before = target.read_text() if name.endswith(".json") else None
    spoil(target)
    assert before is None or target.read_text() != before
    refused(capsys, continue_args(query, index_copy, tmp_path / "out"), "corrupt")
    assert not (tmp_path / "out").exists()


def test_nan_style_vectors_never_reach_ranking_json(
    index_copy: Path, query: Path, tmp_path: Path, capsys
) -> None:
    context = live_version(index_copy) / "part-000" / "context.npy"
    values = np.load(context)
    values[:] = np.nan
    np.save(context, values)
    refused(capsys, continue_args(query, index_copy, tmp_path / "out"), "NaN")
    assert not (tmp_path / "out").exists()


def test_second_build_into_one_folder_is_refused_and_the_index_still_answers(
    built: tuple[Path, Path], tmp_path: Path, query: Path, capsys
) -> None:
    source, ckpt = built[0].parent / "audio", built[1]
    out = tmp_path / "index"
    second: list[BaseException] = []

    def start_second(stage: str) -> None:  # a second build while the first is mid-way
        if stage == "part" and not second:
            try:
                build_index(source, out, embedder=str(ckpt), progress=False)
            except EnsembleError as exc:
                second.append(exc)

    build_index(source, out, embedder=str(ckpt), progress=False, on_stage=start_second)
    assert len(second) == 1 and "Another `index build`" in str(second[0])
    with build_lock(out):  # held by someone else: the CLI says so in one line
        refused(capsys, ["index", "build", source, "--out", out, "--embedder", ckpt], "Another")
    assert len(open_index(out)) > 0
    assert main([str(a) for a in continue_args(query, out, tmp_path / "res")]) == 0
    assert json.loads((tmp_path / "res" / "ranking.json").read_text())["candidates"]


def test_failed_build_leaves_no_folder(built: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    argv = ["index", "build", tmp_path / "nowhere", "--out", tmp_path / "i", "--embedder", built[1]]
    refused(capsys, argv, "does not exist")
    assert not (tmp_path / "i").exists()


# -- options and configs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--top-k", "100000"], "between 1 and 8"),
        (["--hops", "50"], "between 1 and 4"),
        (["--weights", ",".join(f"{name}=0" for name in PART_NAMES)], "non-zero"),
        (["--candidates", "nan"], "not an integer"),
    ],
)  # fmt: skip
def test_continue_caps(
    extra: list[str], needle: str, built: tuple[Path, Path], query: Path, tmp_path: Path, capsys
) -> None:
    refused(capsys, continue_args(query, built[0], tmp_path / "out", *extra), needle)
    assert not (tmp_path / "out").exists()


def test_non_utf8_weights_file(built: tuple[Path, Path], query: Path, tmp_path: Path, capsys):
    weights = tmp_path / "w.json"
    weights.write_bytes(b'{"weights": {"relevance": \xff\xfe}}')
    refused(capsys, continue_args(query, built[0], tmp_path / "o", "--weights", weights), "UTF-8")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["index", "build", "{tmp}", "--out", "{tmp}/i", "--hop-seconds", "nan"], "0.01 and 60"),
        (["train", "instrument", "--data", "{tmp}", "--instrument", "violin", "--lr", "nan"],
         "--lr"),
        (["corpus", "render", "--out", "{tmp}/c", "--max-seconds", "nan"], "4 and 3600"),
        (["perform", "{tmp}/q.wav", "--out", "{tmp}/o", "--autotune", "2"], "0 and 1"),
    ],
)  # fmt: skip
def test_numeric_options_out_of_range(
    argv: list[str], needle: str, tmp_path: Path, query: Path, capsys
) -> None:
    refused(capsys, [a.replace("{tmp}", str(tmp_path)) for a in argv], needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.wav"]


@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="needs FluidSynth")
def test_soundfont_that_is_not_one(tmp_path: Path, query: Path, capsys) -> None:
    argv = ["corpus", "render", "--out", tmp_path / "c", "--soundfont", query]
    refused(capsys, argv, "is not a SoundFont")
    assert not (tmp_path / "c").exists()


def _edit_json(path: Path, **changes: object) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda d: _edit_json(d / "violin" / "config.json", hop_length=0), "hop_length"),
        (lambda d: _edit_json(d / "violin" / "config.json", hidden_size=200000), "hidden_size"),
        (lambda d: _edit_json(d / "violin" / "config.json", reverb_seconds=1e6), "reverb"),
        (lambda d: shutil.copy(d / "cello" / "config.json", d / "violin"), "holds the config"),
        (lambda d: (d / "violin" / "config.json").write_bytes(b"\xff\xfe{"), "Cannot read"),
        (lambda d: _edit_json(d / "conductor" / "config.json",
                              norm={**json.loads((d / "conductor" / "config.json").read_text())[
                                  "norm"], "pitch_std": float("nan")}), "NaN"),
    ],
)  # fmt: skip
def test_bad_checkpoints_are_refused_with_a_sentence(
    edit: Callable[[Path], None],
    needle: str,
    checkpoints: Path,  # noqa: F811
    tmp_path: Path,
    query: Path,
    capsys,
) -> None:
    root = Path(shutil.copytree(checkpoints, tmp_path / "ckpt"))
    edit(root)
    argv = ["perform", query, "--out", tmp_path / "o", "--checkpoints", root,
            "--instruments", "violin,cello"]  # fmt: skip
    refused(capsys, argv, needle)
    assert not (tmp_path / "o").exists() and leftovers(tmp_path) == []


def test_conductor_weights_with_nan(checkpoints: Path, tmp_path: Path, capsys) -> None:  # noqa: F811
    from safetensors.torch import load_file, save_file

    root = Path(shutil.copytree(checkpoints, tmp_path / "ckpt"))
    weights = root / "conductor" / "model.safetensors"
    state = load_file(weights)
    next(iter(state.values())).fill_(float("nan"))
    save_file(state, weights)
    query = tmp_path / "q.wav"
    write_audio(query, melody(3, 3.0))
    argv = ["perform", query, "--out", tmp_path / "o", "--checkpoints", root,
            "--instruments", "violin,cello"]  # fmt: skip
    refused(capsys, argv, "NaN")


# -- ratings ------------------------------------------------------------------------------------


@pytest.fixture
def ratings_db(tmp_path: Path) -> Path:
    from ensemble.ratings import RatingsStore
    from tests.test_ratings import judgement

    store = RatingsStore(tmp_path / "r.sqlite")
    store.add_judgement(judgement())
    store.close()
    return tmp_path / "r.sqlite"


def test_export_never_overwrites_without_force(ratings_db: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "ratings.csv"
    out.write_text("keep me")
    argv = ["ratings", "export", "--db", ratings_db, "--format", "csv", "--out", out]
    refused(capsys, argv, "--force")
    assert out.read_text() == "keep me"
    old = os.umask(0o022)
    try:
        assert main([str(a) for a in [*argv, "--force"]]) == 0
    finally:
        os.umask(old)
    assert out.read_text().startswith("judgement_id") and stat.S_IMODE(out.stat().st_mode) == 0o644
    assert leftovers(tmp_path) == []


def test_failed_export_and_fit_leave_no_temporary(ratings_db: Path, tmp_path: Path, capsys):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "w.json").mkdir()  # a folder where the file should go: os.replace fails
    refused(capsys, ["ratings", "fit", "--db", ratings_db, "--out", tmp_path / "sub" / "w.json"],
            "is a folder")  # fmt: skip
    from ensemble.ratings.export import write_export

    with pytest.raises(ValueError):  # a NaN score cannot be written as strict JSON
        from ensemble.ratings import RatingsStore

        judgements = RatingsStore(ratings_db, readonly=True).judgements()
        judgements[0].candidates[0].scores["relevance"] = float("nan")
        write_export(judgements, "jsonl", tmp_path / "sub" / "out.jsonl")
    assert leftovers(tmp_path / "sub") == [] and not (tmp_path / "sub" / "out.jsonl").exists()


def test_stats_on_a_read_only_copy(ratings_db: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    copy = Path(shutil.copy(ratings_db, folder / "r.sqlite"))
    before = copy.read_bytes()
    copy.chmod(0o444)
    folder.chmod(0o555)
    try:
        assert main(["ratings", "stats", "--db", str(copy)]) == 0
        assert "judgements     1" in capsys.readouterr().out
        assert copy.read_bytes() == before
    finally:
        folder.chmod(0o755)


# -- music21 -------------------------------------------------------------------------------------


def test_scores_are_parsed_without_the_pickle_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    from ensemble.data.symbolic import list_symbolic, load_symbolic_track

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", None)
    (tmp_path / "tunes").mkdir()
    (tmp_path / "tunes" / "tune.abc").write_text(
        "X:1\nT:Test\nM:4/4\nL:1/4\nQ:1/4=120\nK:C\nCDEF|GABc|cBAG|FEDC|]\n"
    )
    refs = list_symbolic(tmp_path / "tunes")
    assert refs and load_symbolic_track(refs[0])
    assert not [p for p in scratch.rglob("*") if p.suffix in (".p", ".gz", ".pgz")]
