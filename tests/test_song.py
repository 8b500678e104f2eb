"""Growing a song: keep and undo are exact, and `song grow` writes a whole song whose seams do
not click (shipped checkpoints and the shipped example index)."""

from __future__ import annotations

import json
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf

from ensemble.cli import main
from ensemble.config import SAMPLE_RATE
from ensemble.errors import EnsembleError
from ensemble.instrument import Instrument
from ensemble.rag.continuation import Continuation, Segment
from ensemble.song import Song

REPO = Path(__file__).resolve().parent.parent


def continuation(head: np.ndarray, body: np.ndarray, source: str, start: float) -> Continuation:
    """A kept candidate as `render_continuations` makes it: the song's ending (crossfaded at its
    end), then the new material."""
    faded = head.copy()
    faded[-100:] *= np.linspace(1, 0, 100)
    segment = Segment(f"{source}@{start:g}s", source, start, 0.9, 0.5, 1.0, {})
    return Continuation(1, [segment.chunk_id], [segment], 0.9, 0.5, 1.0, {},
                        audio=np.concatenate([faded, body]).astype(np.float32),
                        seam_s=len(head) / SAMPLE_RATE)  # fmt: skip


def test_keep_appends_at_the_seam_and_undo_restores_the_song_exactly() -> None:
    rng = np.random.default_rng(0)
    start = Song(rng.standard_normal(5 * SAMPLE_RATE).astype(np.float32), 5.0)
    head = start.audio[-4 * SAMPLE_RATE :]
    one = start.keep(continuation(head, np.ones(3 * SAMPLE_RATE, np.float32), "a", 10.0))
    assert one.duration_s == pytest.approx(8.0) and one.sections[0].song_start_s == 5.0
    assert one.sections[0].seconds == pytest.approx(3.0)
    two = one.keep(continuation(one.audio[-4 * SAMPLE_RATE :], np.zeros(SAMPLE_RATE), "b", 2.0))
    assert two.duration_s == pytest.approx(9.0)
    assert [(s.source, s.start_s) for s in two.used()] == [("a", 10.0), ("b", 2.0)]
    np.testing.assert_array_equal(two.undo().audio, one.audio)
    np.testing.assert_array_equal(two.undo().undo().audio, start.audio)
    with pytest.raises(EnsembleError, match="no section to undo"):
        start.undo()


def test_song_grow_writes_a_whole_song_without_clicks(tmp_path: Path, capsys) -> None:
    out = tmp_path / "song"
    code = main(["song", "grow", str(REPO / "examples" / "folk_flute.wav"), "--index",
                 str(REPO / "examples" / "index"), "--sections", "2", "--seconds", "5",
                 "--instruments", "violin,cello,bass,drums", "--out", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "song.json").read_text())
    mix, sr = sf.read(out / "song.wav")
    band = ("violin", "cello", "bass", "drums")
    assert sr == max(Instrument.from_pretrained(n).config.sample_rate for n in band)
    assert mix.ndim == 2
    assert len(mix) / sr == pytest.approx(record["input_seconds"] + 2 * 5.0, abs=0.02)
    assert [s["song_start_s"] for s in record["sections"]] == pytest.approx([10.0, 15.0])
    sources = [(s["source"], s["source_start_s"]) for s in record["sections"]]
    assert len(set(sources)) == 2 and all(s["chunk_ids"] for s in record["sections"])
    for stem in band:
        assert sf.info(str(out / "stems" / f"{stem}.wav")).frames == len(mix)
    tracks = [t.name for t in mido.MidiFile(out / "song.mid").tracks[1:]]
    assert tracks == ["violin", "cello", "bass", "drums"]
    # No click at a seam: the sample-to-sample jump around it is no outlier of the whole song.
    mono = mix.mean(axis=1)
    jumps = np.abs(np.diff(mono))
    for section in record["sections"]:
        at = int(section["song_start_s"] * sr)
        near = sr // 100  # 10 ms either side
        assert jumps[at - near : at + near].max() <= np.percentile(jumps, 99.9)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--sections", "0"], "between 1 and 12"),
        (["--seconds", "3"], "between 4 and 30"),
        (["--sections", "12", "--seconds", "30"], "longer than Ensemble performs"),
    ],
)
def test_song_grow_refuses_bad_requests_in_one_line(
    extra: list[str], message: str, tmp_path: Path, capsys
) -> None:
    song = ["song", "grow", str(REPO / "examples" / "folk_flute.wav")]
    code = main([*song, "--index", str(REPO / "examples" / "index"), "--out", str(tmp_path / "o"),
                 *extra])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_timeline_labels_sources_only_after_the_reveal() -> None:
    from ensemble.plots import song_timeline_figure

    start = Song(np.zeros(5 * SAMPLE_RATE, np.float32), 5.0)
    song = start.keep(continuation(start.audio[-4 * SAMPLE_RATE :], np.ones(SAMPLE_RATE),
                                   "folk_Track00015", 12.0))  # fmt: skip
    hidden, shown = song_timeline_figure(song, reveal=False), song_timeline_figure(song)
    assert [bar.base[0] for bar in shown.data] == [0.0, 5.0]
    assert "folk_Track00015" in shown.data[1].text[0]
    assert all("folk_Track00015" not in (bar.text[0] + bar.hovertemplate) for bar in hidden.data)
