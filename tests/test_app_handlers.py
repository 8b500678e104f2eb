"""The listening room's handlers, called as the app calls them, on real (untrained, small) models
and a real index built from synthetic melodies by the library's own build code."""

from __future__ import annotations

import copy
import json
import time
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ensemble.audio import write_audio
from ensemble.conductor import (
    Conductor,
    ConductorConfig,
    ConductorNet,
    InstrumentInfo,
    ModelConfig,
)
from ensemble.config import SAMPLE_RATE
from ensemble.errors import EnsembleError
from ensemble.instrument import Instrument, InstrumentConfig
from ensemble.listening import Room
from ensemble.rag import PART_NAMES, build_index
from ensemble.room_config import APP_MAX_SECONDS, RoomConfig, RoundOptions
from ensemble.room_gate import LATENCY_SLACK_S
from ensemble.room_queue import RoundQueue
from ensemble.room_state import RoundResult, Session
from ensemble.room_verdict import LETTERS, REVEAL_COLUMNS, Submission, ranking_from_slots

STATS = {"pitch_midi_mean": 70.0, "loudness_quantiles": list(np.linspace(-70.0, -15.0, 21))}
LINEUP = ["violin", "cello", "drums"]


def melody(seconds: float, root_hz: float, seed: int, note_s: float = 0.4) -> np.ndarray:
    """A harmonic melody on a major scale with short rests: pitched, voiced, varied."""
    rng = np.random.default_rng(seed)
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12])
    n_notes = int(np.ceil(seconds / note_s))
    steps = scale[rng.integers(0, len(scale), n_notes)]
    per_note = int(note_s * SAMPLE_RATE)
    f0 = np.repeat(root_hz * 2.0 ** (steps / 12.0), per_note)[: int(seconds * SAMPLE_RATE)]
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    envelope = np.tile(np.minimum(1.0, np.linspace(4.0, 0.0, per_note)), n_notes)[: len(f0)]
    wave = sum(0.5 / k * np.sin(k * phase) for k in (1, 2, 3, 4))
    return (0.4 * wave * envelope).astype(np.float32)


def make_room_files(root: Path, listen_seconds: float = 0.5) -> RoomConfig:
    """Small checkpoints (violin, cello, drums, conductor), a 3-file index and an example input.

    Built with the real classes and the real index builder; only the sizes are small so the suite
    stays fast on two cores.
    """
    checkpoints = root / "checkpoints"
    for name, kind in (("violin", "pitched"), ("cello", "pitched"), ("drums", "drums")):
        config = InstrumentConfig(
            name=name, kind=kind, hidden_size=32, gru_layers=1, n_harmonics=8,
            n_noise_bands=16, stats=dict(STATS),
        )
        Instrument(config).save(checkpoints / name)
    infos = [
        InstrumentInfo("violin", False, -30.0, 72.0),
        InstrumentInfo("cello", False, -32.0, 48.0),
        InstrumentInfo("drums", True, -35.0, 0.0),
    ]
    model = ModelConfig(d_model=32, n_heads=2, encoder_layers=1, follower_layers=1, frame_dim=16,
                        window_frames=256, overlap_frames=64)
    config = ConductorConfig(model=model, instruments=infos)
    Conductor(config, ConductorNet(model, len(infos))).save(checkpoints / "conductor")

    corpus = root / "corpus"
    for i, root_hz in enumerate((220.0, 261.6, 329.6)):
        write_audio(corpus / f"tune{i}.wav", melody(12.0, root_hz, seed=i))
    build_index(corpus, root / "index", embedder=Instrument.from_pretrained(checkpoints / "violin"),
                progress=False)
    write_audio(root / "example.wav", melody(6.0, 293.7, seed=7))
    return RoomConfig(
        checkpoints=checkpoints,
        index=root / "index",
        ratings_db=root / "ratings.sqlite",
        weights=root / "weights.json",
        work_dir=root / "work",
        listen_seconds=listen_seconds,
    )


@pytest.fixture(scope="module")
def room(tmp_path_factory: pytest.TempPathFactory) -> Room:
    return Room.from_config(make_room_files(tmp_path_factory.mktemp("room")))


def example(room: Room) -> Path:
    return room.config.index.parent / "example.wav"  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def first(room: Room) -> tuple[Session, RoundResult]:
    """One real round (3 candidates, 3 instruments), shared: rounds cost seconds on 2 cores."""
    session = Session()
    progress: list[tuple[float, str]] = []
    result = room.run_round(session, example(room), RoundOptions(instruments=LINEUP, top_k=3),
                            lambda f, t: progress.append((f, t)))
    assert progress[0][0] < progress[-1][0] == 1.0
    return session, result


@pytest.fixture
def played(first: tuple[Session, RoundResult]) -> Session:
    """A fresh session holding a copy of the shared round (its own uid: a new judgement)."""
    session = Session()
    session.round = replace(copy.deepcopy(first[0].round), uid=uuid.uuid4().hex)
    return session


def play(room: Room, session: Session, slot: int, start: float, seconds: float) -> None:
    """The page's reports for one play of ``seconds`` at normal speed, from ``start``."""
    room.gate.listen(session, [{"slot": slot, "kind": "play", "pos": 0.0, "t": start}], now=start)
    room.gate.listen(session, [{"slot": slot, "kind": "pause", "pos": seconds,
                                "t": start + seconds}], now=start + seconds)


def listen_all(room: Room, session: Session, seconds: float = 1.0) -> None:
    for slot in range(len(session.round.shown_order)):  # type: ignore[union-attr]
        play(room, session, slot, 100.0 + 2 * seconds * slot, seconds)


def test_round_returns_performance_and_blind_candidates(
    room: Room, first: tuple[Session, RoundResult]
) -> None:
    session, result = first
    assert result.mix_path.is_file() and result.mix_path.name.startswith("mix-")
    assert {p.name.split("-")[0] for p in result.files} == {"mix", "violin", "cello", "drums",
                                                            "arrangement"}  # fmt: skip
    assert all(sf.info(p).channels == 2 for p in result.files if p.suffix == ".wav")  # stereo
    assert result.files[-1].suffix == ".mid"
    assert [c.letter for c in result.candidates] == ["A", "B", "C"]
    current = session.round
    assert current is not None and sorted(current.shown_order) == [0, 1, 2]
    assert [c.rank for c in current.candidates] == [1, 2, 3]
    for shown in result.candidates:
        # Nothing the listener sees names the model rank or a score: the clip's URL is a random
        # token, and the plot is titled with the letter only.
        assert shown.url.startswith("room-audio/") and len(shown.url) > len("room-audio/.wav")
        assert shown.figure.layout.title.text == f"Candidate {shown.letter}"
        assert shown.duration_s > 1.0 and shown.need_s == 0.5
    assert len({c.url for c in result.candidates}) == 3
    assert [t.name for t in result.shown.overview.data] == [  # type: ignore[union-attr]
        f"Candidate {c.letter}" for c in result.candidates]
    assert not result.gate.ready
    assert current.settings["weights"] == room.weights.weights
    assert current.settings["weights_source"] == "default"
    assert current.settings["leader"] == "violin"


def test_performance_analysis_follows(room: Room, first: tuple[Session, RoundResult]) -> None:
    session, _ = first
    analysis = room.rounds.analyse(session)
    assert analysis is not None
    assert [row[0] for row in analysis.table] == ["input", "mix", *LINEUP]
    assert analysis.table[4][5] is None  # drums have no melody
    assert {p.name.split("-")[0] for p in analysis.files} >= {"mix", "metrics"}
    metrics = json.loads(analysis.files[-1].read_text())
    assert set(metrics) == {"input", "mix", *LINEUP}
    # The mix and input are shown; stems wait one legend click away.
    hidden = {t.name for t in analysis.figure.data if t.visible == "legendonly"}
    assert hidden == set(LINEUP)
    assert room.rounds.analyse(session) is None  # measured once per round
    assert room.rounds.analyse(Session()) is None


def test_listen_gate_counts_media_time_heard(room: Room, played: Session) -> None:
    assert not room.gate.state(played).ready
    play(room, played, 0, 10.0, 0.3)
    gate = room.gate.state(played)
    assert not gate.ready and "A 0.3/0.5 s" in gate.text
    play(room, played, 0, 20.0, 0.3)
    gate = room.gate.state(played)
    assert "A ✓" in gate.text  # 0.6 s over two plays
    # A pause without a play (the player's own pause at the end) adds nothing.
    pause = [{"slot": 0, "kind": "pause", "pos": 9.0, "t": 99.0}]
    assert room.gate.listen(played, pause, now=99.0).text == gate.text
    # Half speed: 0.8 s of wall time hear 0.4 s of the clip, and 0.4 s is what counts.
    room.gate.listen(played, [{"slot": 1, "kind": "play", "pos": 0.0, "t": 30.0}], now=30.0)
    room.gate.listen(played, [{"slot": 1, "kind": "progress", "pos": 0.2, "t": 30.4}], now=30.4)
    assert "B 0.4/0.5 s" in room.gate.listen(
        played, [{"slot": 1, "kind": "pause", "pos": 0.4, "t": 30.8}], now=30.8).text
    assert not room.gate.state(played).ready  # B and C not heard enough yet
    with pytest.raises(EnsembleError, match="Listen to every candidate"):
        room.recorder.submit(played, Submission([1, 2, 3]))
    play(room, played, 1, 40.0, 0.5)
    play(room, played, 2, 50.0, 1.0)
    assert room.gate.state(played).ready
    events = room.store.listened_seconds(played.session_id, played.round.fingerprint)  # type: ignore[union-attr]
    index_a = played.round.shown_order[0]  # type: ignore[union-attr]
    assert events[played.round.candidates[index_a].chunk_id] == pytest.approx(0.6)  # type: ignore[union-attr]


def test_made_up_reports_are_capped_and_flagged(room: Room, played: Session) -> None:
    # Claiming 30 s heard after 1 s of server time: the credit is capped near what passed, and
    # the page's clock running ahead of the server's flags the round.
    room.gate.listen(played, [{"slot": 0, "kind": "play", "pos": 0.0, "t": 0.0}], now=10.0)
    room.gate.listen(played, [{"slot": 0, "kind": "pause", "pos": 30.0, "t": 30.0}], now=11.0)
    ledger = played.round.ledger  # type: ignore[union-attr]
    assert ledger.heard[played.round.shown_order[0]] == 1.0 + LATENCY_SLACK_S  # type: ignore[union-attr]
    assert ledger.flags([True, True, True]) == ["too_fast"] and ledger.too_fast == 0
    # Positions running ahead of the page's own clock (2x playback) are counted as well.
    room.gate.listen(played, [{"slot": 1, "kind": "play", "pos": 0.0, "t": 40.0}], now=40.0)
    room.gate.listen(played, [{"slot": 1, "kind": "pause", "pos": 4.0, "t": 42.0}], now=42.0)
    assert ledger.too_fast == 1 and ledger.heard[played.round.shown_order[1]] == 2.0  # type: ignore[union-attr]
    with pytest.raises(EnsembleError, match="kind is one of"):
        room.gate.listen(played, [{"slot": 0, "kind": "rewind", "pos": 0, "t": 0}])
    with pytest.raises(EnsembleError, match="needs slot, kind, pos and t"):
        room.gate.listen(played, '[{"slot": 0}]')


def test_late_handling_is_not_mistaken_for_cheating(room: Room, played: Session) -> None:
    """Under load the server may handle a play seconds late and the pause at once; an honest
    page's own clock keeps the spans apart and in time."""
    for slot, page_t in enumerate((0.0, 3.0, 6.0)):
        # Each play handled 2.5 s late, each pause on time: spans overlap in server time.
        room.gate.listen(played, [{"slot": slot, "kind": "play", "pos": 0.0, "t": page_t}],
                    now=100.0 + page_t + 2.5)
        room.gate.listen(played, [{"slot": slot, "kind": "pause", "pos": 3.0, "t": page_t + 3.0}],
                    now=100.0 + page_t + 3.0)
    ledger = played.round.ledger  # type: ignore[union-attr]
    assert ledger.flags([True, True, True]) == [] and ledger.heard == [3.0, 3.0, 3.0]


def test_listen_events_without_a_round_are_harmless(room: Room) -> None:
    report = [{"slot": 3, "kind": "play", "pos": 0.0, "t": 0.0}]
    assert not room.gate.listen(None, report).ready
    assert not room.gate.listen(Session(), report).ready


def test_submit_stores_judgement_and_reveals(room: Room, played: Session) -> None:
    listen_all(room, played)
    current = played.round
    assert current is not None
    before = room.store.count()
    reveal = room.recorder.submit(played, Submission([3, 1, 2], reason="C first"))
    stored = room.store.judgements(played.session_id)
    assert room.store.count() == before + 1 and len(stored) == 1
    j = stored[0]
    assert j.ranking == [current.shown_order[1], current.shown_order[2], current.shown_order[0]]
    assert j.shown_order == current.shown_order
    assert j.listen_seconds == [1.0, 1.0, 1.0]
    assert j.input_fingerprint == current.fingerprint
    assert [c.chunk_id for c in j.candidates] == [c.chunk_id for c in current.candidates]
    assert {"relevance", "pitch_coherence", "chroma_coherence", "loudness_coherence",
            "composite"} <= set(j.candidates[0].scores)
    assert j.instruments == LINEUP
    assert j.settings["top_k"] == 3 and j.settings["perform"]["auto_adjust"] is True
    assert j.model_version == room.versions.model and j.index_version == room.versions.index
    assert j.app_version == room.versions.app
    assert reveal.judgement_id == j.id and f"#{j.id}" in reveal.text
    assert (j.verdict, j.reason, j.ties) == ("ranking", "C first", None)
    # Handler calls never download the clips, so the gate's fetch check flags the judgement.
    assert j.flags == ["not_fetched"] and "kept aside" in reveal.text
    assert [row[0] for row in reveal.rows] == ["A — your 3rd", "B — your 1st", "C — your 2nd"]
    assert sorted(row[1] for row in reveal.rows) == [1, 2, 3]
    assert len(reveal.rows[0]) == len(REVEAL_COLUMNS) == 5
    assert [row[0] for row in reveal.details] == ["A", "B", "C"]
    # A double click stores nothing new; the round is closed.
    assert room.recorder.submit(played, Submission([3, 1, 2])).judgement_id == j.id
    assert room.store.count() == before + 1
    with pytest.raises(EnsembleError, match="already submitted"):
        room.recorder.submit(played, Submission([1, 2, 3]))
    assert "Submitted" in room.gate.state(played).text


def test_reveal_names_disagreements(room: Room, played: Session) -> None:
    listen_all(room, played)
    current = played.round
    assert current is not None
    # Rank exactly against the model: the model's best last, its worst first.
    model_rank = {slot: current.candidates[i].rank for slot, i in enumerate(current.shown_order)}
    reveal = room.recorder.submit(played, Submission([4 - model_rank[s] for s in range(3)]))
    assert "τ = -1.00" in reveal.text
    best_slot = next(s for s, r in model_rank.items() if r == 1)
    assert f"Candidate {LETTERS[best_slot]}: you ranked it 3rd, the score 1st" in reveal.text


@pytest.mark.parametrize(
    ("ranks", "message"),
    [
        ([1, 1, 2], r"different rank: rank 1 \(A and B\) given twice, 3 not at all"),
        ([1, None, 2], "Give Candidate B a rank"),
        ([1, 2], "Rank all 3 candidates"),
        ([1, 2, 7], "Ranks go from 1 to 3; check Candidate C"),
    ],
)
def test_bad_rankings_are_explained(ranks: list[int | None], message: str) -> None:
    with pytest.raises(EnsembleError, match=message):
        ranking_from_slots(ranks, [2, 0, 1])


def test_ranking_maps_slots_to_candidates() -> None:
    # Slot ranks [2, 3, 1] over shown order [2, 0, 1]: slot C (candidate 1) is best.
    assert ranking_from_slots(["2", "3", "1"], [2, 0, 1]) == [1, 2, 0]


def test_submit_without_round(room: Room) -> None:
    with pytest.raises(EnsembleError, match="nothing to rank"):
        room.recorder.submit(Session(), Submission([1]))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.wav", b"", "empty"),
        ("notes.wav", b"these are not audio samples\n" * 20, "not an audio file"),
    ],
)
def test_bad_uploads_are_readable_and_keep_the_room_usable(
    room: Room, played: Session, tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    previous = played.round
    with pytest.raises(EnsembleError, match=message):
        room.run_round(played, path, RoundOptions(instruments=LINEUP))
    assert played.round is previous  # the earlier round can still be ranked
    # No half-made round left.
    assert not list((room.sessions.work_dir / played.session_id).glob("*"))


def test_silent_too_long_and_missing_uploads(room: Room, tmp_path: Path) -> None:
    silent = write_audio(tmp_path / "silent.wav", np.zeros(2 * SAMPLE_RATE, np.float32))
    with pytest.raises(EnsembleError, match="silent"):
        room.run_round(Session(), silent, RoundOptions(instruments=LINEUP))
    long = write_audio(tmp_path / "long.wav", melody(APP_MAX_SECONDS + 2, 220.0, seed=3))
    with pytest.raises(EnsembleError, match="maximum is 30 s"):
        room.run_round(Session(), long, RoundOptions(instruments=LINEUP))
    with pytest.raises(EnsembleError, match="Upload or record"):
        room.run_round(Session(), None, RoundOptions(instruments=LINEUP))


def test_trim_keeps_the_first_30_seconds(room: Room, tmp_path: Path) -> None:
    long = write_audio(tmp_path / "long.wav", melody(APP_MAX_SECONDS + 2, 220.0, seed=3))
    session = Session()
    result = room.run_round(session, long, RoundOptions(instruments=["violin"], top_k=1,
                                                        trim=True))
    assert any("first 30 s" in m for m in result.messages)
    assert session.round is not None
    assert session.round.settings["input_seconds"] == pytest.approx(APP_MAX_SECONDS, abs=0.01)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (RoundOptions(instruments=[], leader="drums"), "Choose a leader"),
        (RoundOptions(instruments=["violin", "tuba"]), "tuba cannot play along"),
        (RoundOptions(instruments=["violin"], top_k=0), "Top-K must be between"),
        (RoundOptions(instruments=["violin"], weights=dict.fromkeys(PART_NAMES, 0.0)),
         "non-zero"),
    ],
)
def test_bad_choices(room: Room, options: RoundOptions, message: str) -> None:
    with pytest.raises(EnsembleError, match=message):
        room.run_round(Session(), example(room), options)


def test_roles_are_what_the_library_plays(room: Room) -> None:
    # Asked of Ensemble.perform, not listed: drums cannot lead; all three can follow.
    assert room.roles.leaders == ["cello", "violin"]
    assert room.roles.followers == ["cello", "drums", "violin"]
    assert room.roles.band_choices("violin") == ["cello", "drums"]
    assert room.roles.default_leader() == "violin"


def test_tie_all_bad_and_skip(room: Room, first: tuple[Session, RoundResult]) -> None:
    def fresh() -> Session:
        session = Session()
        session.round = replace(copy.deepcopy(first[0].round), uid=uuid.uuid4().hex)
        return session

    tied = fresh()
    listen_all(room, tied)
    with pytest.raises(EnsembleError, match='tick "tie"'):
        room.recorder.submit(tied, Submission([1, 1, 2]))
    with pytest.raises(EnsembleError, match="give the candidates you find equal the same rank"):
        room.recorder.submit(tied, Submission([1, 2, 3], tie=True))
    room.recorder.submit(tied, Submission([2, 1, 2], tie=True, reason="A and C are alike"))
    j = room.store.judgements(tied.session_id)[0]
    order = tied.round.shown_order  # type: ignore[union-attr]
    assert (j.verdict, j.ties, j.reason) == ("tie", [[order[0], order[2]]], "A and C are alike")
    assert j.ranking == [order[1], order[0], order[2]]

    bad = fresh()
    listen_all(room, bad)
    room.recorder.submit(bad, Submission([None, None, None], all_bad=True))
    assert room.store.judgements(bad.session_id)[0].verdict == "all_bad"

    skipped = fresh()  # nothing heard: skipping needs no listening
    reveal = room.recorder.submit(skipped, Submission([], skip=True))
    stored = room.store.judgements(skipped.session_id)[0]
    assert (stored.verdict, stored.ranking) == ("skip", None)
    assert "Kendall" not in reveal.text


def test_blind_across_rounds(room: Room) -> None:
    """A listener (even in a new tab of the same browser) is not served a clip again under an
    old name, nor shown a candidate revealed to them before while fresh ones remain."""
    tab = room.sessions.start(None, "browser-1")
    first = room.run_round(tab, example(room), RoundOptions(instruments=["violin"], top_k=3))
    listen_all(room, tab)
    room.recorder.submit(tab, Submission([1, 2, 3]))
    revealed = {c.chunk_id for c in tab.round.candidates}  # type: ignore[union-attr]
    other_tab = room.sessions.start(None, "browser-1")
    again = room.run_round(other_tab, example(room), RoundOptions(instruments=["violin"],
                                                                  top_k=3))
    assert not {c.url for c in first.candidates} & {c.url for c in again.candidates}
    assert not revealed & {c.chunk_id for c in other_tab.round.candidates}  # type: ignore[union-attr]
    listen_all(room, other_tab)
    room.recorder.submit(other_tab, Submission([1, 2, 3]))
    assert "heard_before" not in room.store.judgements(other_tab.session_id)[0].flags
    # The same candidates judged again by the same browser are flagged, not silently mixed in.
    third = room.sessions.start(None, "browser-1")
    third.round = replace(copy.deepcopy(tab.round), uid=uuid.uuid4().hex, judgement=None)
    listen_all(room, third)
    room.recorder.submit(third, Submission([1, 2, 3]))
    assert {"heard_before", "duplicate"} <= set(room.store.judgements(third.session_id)[0].flags)
    assert room.sessions.start(None, "not an id!").local_id == ""


def test_learned_weights_rank_the_candidates(tmp_path: Path, room: Room) -> None:
    weights = tmp_path / "weights.json"
    weights.write_text('{"weights": {"relevance": 0.2, "pitch_coherence": 1.0, '
                       '"chroma_coherence": 0.1, "loudness_coherence": 0.3}}')
    config = RoomConfig(**{**room.config.__dict__, "weights": weights})
    learned = Room.from_config(config)
    assert learned.weights.weights["pitch_coherence"] == 1.0 and learned.weights.learned
    assert "learned" in learned.describe()
    session = Session()
    learned.run_round(session, example(room), RoundOptions(instruments=["violin"], top_k=2,
                                                           weights=learned.weights.weights))
    assert session.round is not None
    assert session.round.settings["weights_source"] == "learned"
    assert session.round.settings["weights"]["pitch_coherence"] == 1.0
    learned.run_round(session, example(room), RoundOptions(instruments=["violin"], top_k=2))
    assert session.round.settings["weights_source"] == "custom"  # the defaults, set by hand
    weights.write_text("not json")
    fallback = Room.from_config(config)  # unreadable: the defaults, and the app still starts
    assert fallback.weights.weights == room.weights.weights and not fallback.weights.learned


def test_weights_written_while_the_room_runs_are_picked_up(tmp_path: Path, room: Room) -> None:
    weights = tmp_path / "later.json"
    live = Room.from_config(RoomConfig(**{**room.config.__dict__, "weights": weights}))
    assert live.weights.refresh() == room.weights.weights and not live.weights.learned
    weights.write_text('{"weights": {"relevance": 0.4, "pitch_coherence": 0.9, '
                       '"chroma_coherence": 0.1, "loudness_coherence": 0.2}}')
    assert live.weights.refresh()["pitch_coherence"] == 0.9  # `ratings fit` ran meanwhile
    assert live.weights.learned and "learned" in live.describe()
    session = Session()
    live.run_round(session, example(room), RoundOptions(instruments=["violin"], top_k=2,
                                                        weights=live.weights.refresh()))
    assert session.round is not None and session.round.settings["weights_source"] == "learned"
    weights.unlink()
    assert live.weights.refresh() == room.weights.weights and not live.weights.learned


def test_new_round_and_end_session_remove_old_files(room: Room, tmp_path: Path) -> None:
    session = Session()
    short = write_audio(tmp_path / "short.wav", melody(3.0, 330.0, seed=5))
    room.run_round(session, short, RoundOptions(instruments=["violin"], top_k=1))
    old, old_tokens = session.round_folder, session.round.tokens  # type: ignore[union-attr]
    room.run_round(session, short, RoundOptions(instruments=["violin"], top_k=1))
    assert old is not None and not old.exists()
    assert all(room.media.open(t) is None for t in old_tokens)  # old clips are not served
    assert session.round_folder is not None and session.round_folder.is_dir()
    tokens = session.round.tokens  # type: ignore[union-attr]
    assert all(room.media.open(t) is not None for t in tokens)
    room.sessions.end(session)
    assert not session.round_folder.exists()
    assert all(room.media.open(t) is None for t in tokens)


def test_idle_sessions_are_swept(room: Room, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                 ) -> None:
    session = Session()
    room.run_round(session, example(room), RoundOptions(instruments=["violin"], top_k=1))
    token = session.round.tokens[0]  # type: ignore[union-attr]
    assert session.session_id not in room.sessions.sweep()  # fresh: kept
    monkeypatch.setattr(room.config, "session_ttl_s", 0.0)
    time.sleep(0.05)
    # Idle past the limit (an API client that left).
    assert session.session_id in room.sessions.sweep()
    assert not (room.sessions.work_dir / session.session_id).exists()
    assert room.media.open(token) is None


def test_without_an_index_the_performance_still_plays(room: Room) -> None:
    bare = Room.from_config(RoomConfig(**{**room.config.__dict__,
                                          "index": room.config.ratings_db.parent / "no-index"}))
    assert "No RAG index" in bare.describe()
    session = Session()
    result = bare.run_round(session, example(room),
                            RoundOptions(instruments=["violin"]))
    assert result.mix_path.is_file() and result.candidates == []
    assert any(m.startswith("No continuations: No RAG index") for m in result.messages)
    assert session.round is None and "Perform an input first" in bare.gate.state(session).text


def test_room_config_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ENSEMBLE_RATINGS_DB", str(tmp_path / "r.sqlite"))
    monkeypatch.setenv("ENSEMBLE_INDEX", str(tmp_path / "index"))
    monkeypatch.setenv("ENSEMBLE_CHECKPOINTS", "someone/ensemble-checkpoints")
    monkeypatch.setenv("ENSEMBLE_LISTEN_SECONDS", "4.5")
    config = RoomConfig.from_env()
    assert config.ratings_db == tmp_path / "r.sqlite" and config.index == tmp_path / "index"
    assert config.checkpoints == "someone/ensemble-checkpoints" and config.listen_seconds == 4.5
    assert config.weights is not None and config.weights.name == "ratings_weights.json"
    for bad in ("three", "-1"):
        monkeypatch.setenv("ENSEMBLE_LISTEN_SECONDS", bad)
        with pytest.raises(EnsembleError, match="ENSEMBLE_LISTEN_SECONDS must be"):
            RoomConfig.from_env()


def test_multi_hop_candidates_chain_chunks(room: Room) -> None:
    session = Session()
    result = room.run_round(session, example(room), RoundOptions(instruments=["violin"], top_k=2,
                                                                 hops=2))
    assert session.round is not None and session.round.settings["hops"] == 2
    for candidate in session.round.candidates:
        assert candidate.chunk_id.count("+") == 1  # two chained chunks
    figure = result.candidates[0].figure
    assert [a.text for a in figure.layout.annotations][-2:] == ["your input │ continuation",
                                                                "│ seam"]
    # The last 4 s of the input, then two 4 s chunks.
    assert result.candidates[0].duration_s == pytest.approx(4.0 + 2 * 4.0, abs=0.05)


def test_rounds_wait_their_turn_in_order() -> None:
    line = RoundQueue(typical_s=2.0)
    a, b, c = line.join(), line.join(), line.join()
    assert line.place(c) == (2, 6.0)  # two ahead, each about 2 s, then its own
    assert line.wait_turn(a, timeout=0) and not line.wait_turn(b, timeout=0.05)
    line.leave(a, seconds=4.0)  # a took 4 s: the estimate moves towards it
    assert line.wait_turn(b, timeout=0)
    ahead, wait = line.place(c)
    assert ahead == 1 and wait == pytest.approx(2 * (0.7 * 2.0 + 0.3 * 4.0))
    line.leave(b)
    line.leave(b)  # twice: harmless
    assert line.wait_turn(c, timeout=0) and line.waiting == 1


def test_many_judgements_from_one_listener_are_flagged(
    room: Room, first: tuple[Session, RoundResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(room.config, "rate_limit_per_hour", 1)
    flags = []
    for _ in range(2):
        session = room.sessions.start(None, "busy-browser")
        session.round = replace(copy.deepcopy(first[0].round), uid=uuid.uuid4().hex)
        listen_all(room, session)
        room.recorder.submit(session, Submission([1, 2, 3]))
        flags.append(room.store.judgements(session.session_id)[0].flags)
    assert "rate_limited" not in flags[0] and "rate_limited" in flags[1]


def test_uploads_go_with_the_last_session_using_them(
    room: Room, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Restored afterwards.
    monkeypatch.setattr(room.sessions, "copies_dir", room.sessions.copies_dir)
    monkeypatch.setattr(room.sessions, "_shared_copies", room.sessions._shared_copies)
    cache = tmp_path / "cache"
    shipped = write_audio(cache / "h1" / "example.wav", melody(2.0, 330.0, seed=1))
    room.sessions.keep_copies_in(cache)  # what is cached at start (the examples) is everyone's
    upload = write_audio(cache / "h2" / "mine.wav", melody(2.0, 330.0, seed=2))
    first, second = Session(), Session()
    for session in (first, second):  # identical uploads share one cached file
        assert room.check_upload(upload, session=session).startswith("✓ 2.0 s")
    room.check_upload(shipped, session=first)
    room.sessions.end(first)
    assert upload.exists()  # still the second session's
    room.sessions.end(second)
    assert not upload.exists() and shipped.exists()


def test_the_song_grows_from_kept_candidates_undoes_and_downloads(room: Room) -> None:
    session = Session()
    options = RoundOptions(instruments=LINEUP, top_k=3)
    room.run_round(session, example(room), options)
    input_seconds = session.song.duration_s  # type: ignore[union-attr]
    with pytest.raises(EnsembleError, match="Judge this round first"):
        room.songs.keep(session, "A")
    listen_all(room, session)
    room.recorder.submit(session, Submission([1, 2, 3]))
    with pytest.raises(EnsembleError, match="Choose a candidate to keep"):
        room.songs.keep(session, "Z")
    before = session.song.audio.copy()  # type: ignore[union-attr]
    kept_uid = session.round.judgement.uid  # type: ignore[union-attr]
    ending = room.songs.keep(session, "B")
    song = session.song
    assert song is not None and len(song.sections) == 1 and ending.continues_song
    index = session.round.shown_order[1]  # type: ignore[union-attr]
    assert song.sections[0].chunk_ids == session.round.continuations[index].chunk_ids  # type: ignore[union-attr]
    assert song.duration_s > input_seconds and len(ending.audio) <= 30 * SAMPLE_RATE
    assert room.store.keeps()[kept_uid] == ["+".join(song.sections[0].chunk_ids)]
    # The next round continues the song's ending; the song is kept, not restarted.
    room.run_round(session, ending, options)
    assert session.song is song
    timeline = room.songs.timeline(session)
    assert timeline is not None and "revealed after ranking" in timeline.data[1].hovertemplate
    files = room.songs.files(session)
    assert [p.name for p in files[:3]] == ["song.wav", "song.mid", "song.json"]
    assert sf.info(files[0]).duration == pytest.approx(song.duration_s, abs=0.02)
    assert {p.stem for p in files[3:]} == set(LINEUP)
    room.songs.undo(session)
    np.testing.assert_array_equal(session.song.audio, before)  # type: ignore[union-attr]
    with pytest.raises(EnsembleError, match="no section to undo"):
        room.songs.undo(session)
