"""Ensemble's listening room (Gradio): perform an input, then judge its continuations blind.

UI wiring only: every decision lives in `ensemble.listening` (handlers) and the library.
Per-listener values are in a `gr.State` (`Session`); the `Room` holds what all sessions share.

    python app.py          # 0.0.0.0:7860 (GRADIO_SERVER_PORT / GRADIO_SERVER_NAME respected)
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from starlette.middleware import Middleware

from ensemble.errors import EnsembleError
from ensemble.limits import DEFAULT_TOP_K
from ensemble.listening import Room, read_input
from ensemble.perform import PerformSettings
from ensemble.rag.scoring import DEFAULT_WEIGHTS, PART_LABELS, PART_NAMES
from ensemble.room_config import (
    APP_MAX_SECONDS,
    MAX_CANDIDATES,
    MAX_HOPS,
    WORK_PREFIX,
    RoomConfig,
    RoundOptions,
)
from ensemble.room_figures import PERFORMANCE_COLUMNS
from ensemble.room_files import claim, remove_orphans
from ensemble.room_media import MediaRoute
from ensemble.room_page import LOCAL_ID_JS, PLAYERS_CSS, PLAYERS_JS, players_html
from ensemble.room_state import Input, Session
from ensemble.room_verdict import DETAIL_COLUMNS, LETTERS, REVEAL_COLUMNS, Submission

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
MAX_FILE_SIZE = "25mb"  # an upload larger than this is refused by the server before it is stored
SWEEP_EVERY_S = 60.0
TIE, ALL_BAD = "tie (equal ranks are equal)", "all bad"
CSS = PLAYERS_CSS + """
#judge {border: 2px solid var(--color-accent); border-radius: 10px; padding: 8px;
  background: var(--background-fill-primary);}
#judge #judge {border: none; padding: 0;}  /* Gradio repeats a group's id inside it */
/* On a wide screen the judge panel stays in view at the bottom while the players scroll by
   (the container must clip, not hide, its overflow for that); a phone scrolls to it. */
.gradio-container {overflow: visible clip !important;}
@media (min-width: 900px) {
  #judge {position: sticky; bottom: 0; z-index: 20;}
  #judge #judge {position: static;}
}
#judge .rank {min-width: 90px !important;}
#gate {font-size: 0.95em;}
.js-plotly-plot, .js-plotly-plot .plotly {touch-action: pan-y !important;}
"""
INTRO = """# Ensemble — the listening room

1. **Give it audio**: upload or record a melody, or pick an example.
2. **Perform**: your melody drives the leader; the conductor plays the band.
3. **Listen blind**: the retrieved continuations appear in a shuffled order as Candidates A,
   B, C…; hear each for a few seconds, one at a time.
4. **Judge**: rank them (or call a tie, say all are bad, or skip), then submit. Only then are
   the scores and the model's ranks revealed.
5. **Grow a song**: keep the candidate you liked and continue from it (or undo the last
   section); download the whole song performed, with its MIDI and where every section came from.
"""
# What a round updates, in the order of the /perform, /keep and /undo API outputs; "ranks" and
# "slots_plots" are one component per candidate slot.
ROUND_OUTPUTS = ("queue", "status", "mix", "files", "players", "overview", "gate", "submit",
                 "skip", "reveal", "reveal_table", "details", "also", "reason", "session",
                 "ranks", "slots_plots")
VERDICT_OUTPUTS = ("reveal", "reveal_table", "details", "gate", "submit", "skip", "ranks",
                   "timeline")
GATE_OUTPUTS = ("gate", "submit", "skip")


@dataclass(frozen=True)
class Control:
    """One control of a round, declared once: its component, and where its value goes.

    ``target`` is "input" (the audio), or the `RoundOptions` field, `PerformSettings` field or
    score weight named ``name``; the table's order is the order of the controls on the page and
    of the /perform, /keep and /undo API arguments (after the session's, and /keep's letter).
    """

    name: str
    make: Callable[[Room], Any]
    target: str  # "input" | "options" | "settings" | "weights"
    cast: Callable[[Any], Any] = lambda value: value
    advanced: bool = False  # inside the Advanced accordion
    before: str = ""  # a line of Markdown shown above it


def _weight_top(name: str) -> float:
    # The slider reaches twice the default weight, and at least 1.
    return max(1.0, 2.0 * DEFAULT_WEIGHTS[name])


def _weight_control(name: str) -> Control:
    def make(room: Room) -> gr.Slider:
        value = room.weights.weights[name]
        low, high = _slider_range(value, _weight_top(name))
        return gr.Slider(low, high, value=value, step=0.01, label=PART_LABELS[name])

    before = "Score weights (composite = weighted sum):" if name == PART_NAMES[0] else ""
    return Control(name, make, "weights", float, advanced=True, before=before)


def _audio_input(_room: Room) -> gr.Audio:
    return gr.Audio(
        sources=["upload", "microphone"], type="filepath", elem_id="audio-in",
        label=f"Your audio (up to {APP_MAX_SECONDS:g} s; files up to {MAX_FILE_SIZE.upper()})",
    )


def _band(room: Room) -> gr.CheckboxGroup:
    leader = room.roles.default_leader()
    return gr.CheckboxGroup(room.roles.band_choices(leader), value=room.roles.default_band(leader),
                            label="Band (the conductor plays these)", elem_id="instruments")


CONTROLS: tuple[Control, ...] = (
    Control("audio", _audio_input, "input"),
    Control("leader", lambda room: gr.Dropdown(
        room.roles.leaders, value=room.roles.default_leader(),
        label="Leader (plays your melody)", elem_id="leader"), "options"),
    Control("instruments", _band, "options", lambda band: list(band or [])),
    Control("top_k", lambda _: gr.Slider(1, MAX_CANDIDATES, value=DEFAULT_TOP_K, step=1,
                                         label="Top-K continuations"), "options", int, True),
    Control("hops", lambda _: gr.Slider(1, MAX_HOPS, value=1, step=1,
                                        label="Hops (retrieved segments chained)"),
            "options", int, True),
    *(_weight_control(name) for name in PART_NAMES),
    Control("auto_adjust", lambda _: gr.Checkbox(
        True, label="Auto-adjust pitch and loudness to each instrument"), "settings", bool, True),
    Control("octave_shift", lambda _: gr.Slider(-2, 2, value=0, step=1, label="Octave shift"),
            "settings", int, True),
    Control("semitone_shift", lambda _: gr.Slider(-12, 12, value=0, step=1,
                                                  label="Semitone shift"),
            "settings", float, True),
    Control("autotune", lambda _: gr.Slider(0, 1, value=0, step=0.1, label="Autotune"),
            "settings", float, True),
    Control("quiet_threshold_db", lambda _: gr.Slider(
        -90, -20, value=-60, step=1, label="Quiet threshold (dB): quieter input stays silent"),
            "settings", float, True),
    Control("trim", lambda _: gr.Checkbox(
        False, label=f"Use the first {APP_MAX_SECONDS:g} s of longer recordings"),
            "options", bool, True),
)


def round_options(values: dict[str, Any]) -> RoundOptions:
    """The controls' values (by name) as the room's options for a round."""
    fields: dict[str, dict[str, Any]] = {"options": {}, "settings": {}, "weights": {}}
    for control in CONTROLS:
        if control.target in fields:
            fields[control.target][control.name] = control.cast(values[control.name])
    return RoundOptions(**fields["options"], weights=fields["weights"],
                        settings=PerformSettings(**fields["settings"]))


def _updates(names: tuple[str, ...], c: dict[str, Any], **values: Any) -> list[Any]:
    """Handler outputs for the components ``names`` (in that order): the given values, and no
    change for the rest; a per-slot list takes a list of values."""
    out: list[Any] = []
    for name in names:
        slots = isinstance(c[name], list)
        value = values.get(name, [gr.skip()] * len(c[name]) if slots else gr.skip())
        out += value if slots else [value]
    return out


def _components(names: tuple[str, ...], c: dict[str, Any]) -> list[Any]:
    return [x for name in names for x in (c[name] if isinstance(c[name], list) else [c[name]])]


def build_demo(room: Room) -> gr.Blocks:
    """The page; ``room`` supplies models, index, store and defaults."""
    # No `delete_cache`: it ages out the examples' cached files too; the room removes each
    # session's uploads and copies itself when the session ends.
    with gr.Blocks(title="Ensemble — listening room") as demo:
        c: dict[str, Any] = {
            "session": gr.State(None, time_to_live=room.config.session_ttl_s,
                                delete_callback=room.sessions.end),
            "local_id": gr.Textbox(visible=False),
            "reports": gr.Textbox(visible=False),  # the /listen API's input (the page: events)
        }
        gr.Markdown(INTRO)
        c["room_info"] = gr.Markdown(room.describe(), elem_id="room-info")
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                _input_column(room, c)
            with gr.Column(scale=2):
                _output_column(room, c)
        _wire(demo, room, c)
        _wire_judging(room, c)
    demo.queue(max_size=64)
    # A session's uploads and copies go with it.
    room.sessions.keep_copies_in(Path(demo.GRADIO_CACHE))
    return demo


def _input_column(room: Room, c: dict[str, Any]) -> None:
    """The controls, as `CONTROLS` declares them, then the Perform button."""
    for control in CONTROLS:
        if control.advanced:
            continue
        c[control.name] = control.make(room)
        if control.target == "input":
            c["upload_note"] = gr.Markdown(elem_id="upload-note")
            examples = sorted(EXAMPLES_DIR.glob("*.wav"))
            if examples:
                gr.Examples([[str(p)] for p in examples], inputs=[c["audio"]], label="Examples")
    with gr.Accordion("Advanced", open=False):
        for control in CONTROLS:
            if control.advanced:
                if control.before:
                    gr.Markdown(control.before)
                c[control.name] = control.make(room)
    c["run"] = gr.Button("Perform and find continuations", variant="primary", elem_id="run")


def _output_column(room: Room, c: dict[str, Any]) -> None:
    c["queue"] = gr.Markdown(elem_id="queue")
    c["status"] = gr.Markdown(elem_id="status")
    c["mix"] = gr.Audio(type="filepath", label="Ensemble performance (mix)", interactive=False,
                        buttons=["download"], elem_id="mix")
    with gr.Accordion("Download the mix, the stems and metrics.json", open=False):
        c["files"] = gr.File(show_label=False, file_count="multiple", interactive=False)
    with gr.Accordion("Song metrics of the performance: waveform, melody, loudness",
                      open=False):
        c["perf_plot"] = gr.Plot(show_label=False)
        c["perf_table"] = gr.Dataframe(headers=PERFORMANCE_COLUMNS, interactive=False)
    gr.Markdown("## Continuations — listen blind, then judge")
    c["players"] = gr.HTML("", js_on_load=PLAYERS_JS, elem_id="players")
    with gr.Accordion("Overview: all candidates on one plot", open=True):
        c["overview"] = gr.Plot(show_label=False, elem_id="overview")
    with gr.Accordion("Each candidate's waveform, melody and loudness", open=False):
        c["slots_plots"] = [gr.Plot(show_label=False, visible=False) for _ in range(MAX_CANDIDATES)]
    _judge_panel(room, c)
    c["reveal"] = gr.Markdown(elem_id="reveal")
    _song_controls(c)
    c["reveal_table"] = gr.Dataframe(headers=REVEAL_COLUMNS, visible=False, interactive=False,
                                     label="Revealed", elem_id="reveal-table")
    with gr.Accordion("Details: every score and measurement", open=False):
        c["details"] = gr.Dataframe(headers=DETAIL_COLUMNS, interactive=False)


def _judge_panel(room: Room, c: dict[str, Any]) -> None:
    """The gate's state, a rank per candidate slot, tie / all bad, a reason, Submit and Skip."""
    with gr.Group(elem_id="judge"):
        c["gate"] = gr.Markdown(room.gate.state(None).text, elem_id="gate")
        with gr.Row():
            c["ranks"] = [
                gr.Dropdown([], value=None, label=f"Rank of {LETTERS[slot]}", visible=False,
                            elem_id=f"rank-{LETTERS[slot]}", elem_classes="rank", min_width=90)
                for slot in range(MAX_CANDIDATES)
            ]
        with gr.Row():
            c["also"] = gr.CheckboxGroup([TIE, ALL_BAD], label="Also", elem_id="also", scale=2)
            c["reason"] = gr.Textbox(label="Why? (optional)", lines=1, max_length=2000,
                                     elem_id="reason", scale=3)
        with gr.Row():
            c["submit"] = gr.Button("Submit", variant="primary", interactive=False,
                                    elem_id="submit")
            c["skip"] = gr.Button("Skip this round", interactive=False, elem_id="skip")


def _song_controls(c: dict[str, Any]) -> None:
    """The song loop: keep a judged candidate and continue from it, undo, download."""
    with gr.Group(elem_id="song"):
        gr.Markdown("## Your song — keep the continuation you liked and continue from it")
        c["timeline"] = gr.Plot(show_label=False, elem_id="timeline")
        with gr.Row():
            c["keep_choice"] = gr.Dropdown(list(LETTERS[:MAX_CANDIDATES]), value=None,
                                           label="Candidate to keep", elem_id="keep-choice")
            c["keep"] = gr.Button("Keep it and continue", elem_id="keep")
            c["undo"] = gr.Button("Undo the last section", elem_id="undo")
            c["song_download"] = gr.Button("Download the song", elem_id="song-download")
        c["song_note"] = gr.Markdown(elem_id="song-note")
        # Shown once the song is downloaded, hidden again when the song changes (stale files).
        c["song_files"] = gr.File(show_label=False, file_count="multiple", interactive=False,
                                  visible=False, elem_id="song-files")


def _wire(demo: gr.Blocks, room: Room, c: dict[str, Any]) -> None:
    session, weights = c["session"], [c[name] for name in PART_NAMES]
    # Each page load starts the session (with the browser's local id) and picks up weights a
    # `ratings fit` wrote while the app was running.
    demo.load(lambda state, lid: [room.sessions.start(state, lid), *_page_weights(room)],
              [session, c["local_id"]], [session, *weights, c["room_info"]], js=LOCAL_ID_JS,
              api_name=False, show_progress="hidden")
    c["audio"].change(lambda state, path, trim: _arrived(room, state, path, trim),
                      [session, c["audio"], c["trim"]], [c["upload_note"], c["status"]],
                      api_name=False, show_progress="hidden")
    c["leader"].change(lambda lead, band: _band_update(room, lead, band),
                       [c["leader"], c["instruments"]], c["instruments"], api_name=False,
                       show_progress="hidden")
    controls = [c[control.name] for control in CONTROLS]

    def round_handler(make_input: Callable[[Session | None, Any, dict[str, Any]], Input]) -> Any:
        def handler(state: Session | None, *args: Any,
                    progress: gr.Progress = gr.Progress()) -> Iterator[list[Any]]:  # noqa: B008
            extra, values = args[: len(args) - len(CONTROLS)], args[len(args) - len(CONTROLS):]
            named = dict(zip((ctl.name for ctl in CONTROLS), values, strict=True))
            yield from _queued_round(room, c, state, lambda: make_input(state, *extra, named),
                                     named, progress)
        return handler

    # The audio is read first (a broken file is named at once, not after the wait).
    on_run = round_handler(lambda _state, values: read_input(values["audio"], values["trim"]))
    on_keep = round_handler(lambda state, letter, _values: room.songs.keep(state, letter))
    on_undo = round_handler(lambda state, _values: room.songs.undo(state))
    # The song metrics follow as a second step, so the candidates can be heard without
    # waiting for five more pYIN passes.
    analysed = [c["perf_plot"], c["perf_table"], c["files"]]
    for button, handler, inputs, name in (
        (c["run"], on_run, [session, *controls], "perform"),
        (c["keep"], on_keep, [session, c["keep_choice"], *controls], "keep"),
        (c["undo"], on_undo, [session, *controls], "undo"),
    ):
        button.click(
            handler, inputs, _components(ROUND_OUTPUTS, c), api_name=name,
            concurrency_limit=None, show_progress_on=[c["status"]],
        ).then(
            lambda state: (room.songs.timeline(state), gr.update(value=None, visible=False)),
            session, [c["timeline"], c["song_files"]], api_name=False, show_progress="hidden",
        ).then(
            lambda state, progress=gr.Progress(): _analyse(room, state, progress),  # noqa: B008
            session, analysed, api_name="analyse" if name == "perform" else False,
            concurrency_limit=1, concurrency_id="analyse",
        )
    c["song_download"].click(lambda state: _song_files(room, state), session,
                             [c["song_files"], c["song_note"]], api_name="song")


def _wire_judging(room: Room, c: dict[str, Any]) -> None:
    """The players' reports, the rank controls, Submit and Skip."""
    session, gate_outputs = c["session"], _components(GATE_OUTPUTS, c)

    def on_players(state: Session | None, evt: gr.EventData) -> list[Any]:
        return _listen(room, c, state, evt._data)

    # "multiple": a pause and the next play are reported together; "once" would drop one.
    c["players"].input(on_players, [session], gate_outputs, api_name=False,
                       concurrency_limit=None, show_progress="hidden", trigger_mode="multiple")
    c["reports"].submit(lambda state, text: _listen(room, c, state, text),
                        [session, c["reports"]], gate_outputs, api_name="listen",
                        concurrency_limit=None)
    for control in (*c["ranks"], c["also"]):
        control.input(_rank_choices, [session, c["also"], *c["ranks"]], c["ranks"],
                      api_name=False, show_progress="hidden")
    verdict_outputs = _components(VERDICT_OUTPUTS, c)
    c["submit"].click(lambda state, also, why, *ranks: _submit(room, c, state, Submission(
        list(ranks), tie=TIE in (also or []), all_bad=ALL_BAD in (also or []), reason=why)),
        [session, c["also"], c["reason"], *c["ranks"]], verdict_outputs, api_name="submit",
        concurrency_limit=None)
    c["skip"].click(lambda state, why: _submit(room, c, state, Submission([], skip=True,
                                                                          reason=why)),
                    [session, c["reason"]], verdict_outputs, api_name="skip",
                    concurrency_limit=None)


def _slider_range(value: float, top: float) -> tuple[float, float]:
    # Learned weights may be negative or large: the range always includes the value.
    return min(0.0, round(value - 0.5, 1)), max(top, round(value + 0.5, 1))


def _page_weights(room: Room) -> list[Any]:
    weights = room.weights.refresh()
    sliders = []
    for name in PART_NAMES:
        low, high = _slider_range(weights[name], _weight_top(name))
        sliders.append(gr.update(value=weights[name], minimum=low, maximum=high))
    return [*sliders, room.describe()]


def _arrived(room: Room, state: Session | None, path: str | None, trim: bool) -> list[Any]:
    """An upload is checked as it arrives; results of an earlier input are labelled as such."""
    note = room.check_upload(path, bool(trim), state)
    if state is None or state.round_folder is None or not path:
        return [note, gr.skip()]
    return [note, "The results below are for your **previous** input; press Perform for the "
            "new one."]


def _band_update(room: Room, leader: str | None, band: list[str] | None) -> dict[str, Any]:
    offered = room.roles.band_choices(leader)
    return gr.update(choices=offered, value=[n for n in band or [] if n in offered])


def _queue_text(room: Room, ticket: int) -> str:
    ahead, wait_s = room.queue.place(ticket)
    if ahead == 0:
        return f"Your round is next (about {wait_s:.0f} s)."
    return (f"In line: {ahead} round{'s' if ahead > 1 else ''} ahead of yours; estimated "
            f"wait about {wait_s:.0f} s.")


def _run(room: Room, c: dict[str, Any], state: Session | None, given: Input,
         values: dict[str, Any], progress: gr.Progress, ticket: int) -> list[Any]:
    session = state or Session()
    try:
        result = room.run_round(session, given, round_options(values),
                                lambda fraction, text: progress(fraction, desc=text),
                                ticket=ticket)
    except EnsembleError as exc:
        return _failed(c, session, exc)
    return _round_outputs(c, session, result)


def _failed(c: dict[str, Any], session: Session | None, exc: EnsembleError) -> list[Any]:
    # One message, in the status line (no toast on top of it); the previous round stays
    # playable and is labelled as such.
    earlier = (" The results below are from your previous input."
               if session is not None and session.round_folder is not None else "")
    return _updates(ROUND_OUTPUTS, c, queue="", status=f"⚠️ **{exc}**{earlier}")


def _round_outputs(c: dict[str, Any], session: Session, result: Any) -> list[Any]:
    notes = "".join(f"\n- {m}" for m in result.messages)
    k = len(result.candidates)
    ranks, plots = [], []
    for slot in range(MAX_CANDIDATES):
        shown = result.candidates[slot] if slot < k else None
        ranks.append(gr.update(choices=_choices(k), value=None, visible=shown is not None,
                               interactive=True))
        plots.append(gr.update(value=shown.figure if shown else None, visible=bool(shown)))
    return _updates(
        ROUND_OUTPUTS, c, queue="",
        status=f"Ready in {result.seconds:.1f} s: the performance, and {k} candidates to "
        f"judge.{notes}",
        mix=str(result.mix_path), files=[str(p) for p in result.files],
        players=players_html([(s.letter, s.url, s.need_s) for s in result.candidates]),
        overview=result.shown.overview if result.shown else None,
        gate=result.gate.text, submit=gr.update(interactive=result.gate.ready),
        skip=gr.update(interactive=k > 0), reveal="",
        reveal_table=gr.update(value=None, visible=False), details=None, also=[], reason="",
        session=session, ranks=ranks, slots_plots=plots,
    )


def _choices(k: int, taken: set[int] | frozenset[int] = frozenset()) -> list[tuple[str, int]]:
    return [(f"{r}" + (" (best)" if r == 1 else ""), r) for r in range(1, k + 1)
            if r not in taken]


def _rank_choices(state: Session | None, also: list[str] | None, *ranks: Any) -> list[Any]:
    """Ranks already given are not offered again (all are, when ties are allowed)."""
    k = len(state.round.shown_order) if state is not None and state.round is not None else 0
    values = [None if r in (None, "") else int(r) for r in ranks]
    tie = TIE in (also or [])
    out: list[Any] = []
    for slot, value in enumerate(values):
        others = frozenset(v for s, v in enumerate(values) if s != slot and v is not None)
        out.append(gr.update(choices=_choices(k, frozenset() if tie else others), value=value)
                   if slot < k else gr.skip())
    return out


def _analyse(room: Room, state: Session | None, progress: gr.Progress) -> list[Any]:
    analysis = room.rounds.analyse(
        state, lambda fraction, text: progress(fraction, desc=text)
    )
    if analysis is None:
        return [gr.skip(), gr.skip(), gr.skip()]
    return [analysis.figure, analysis.table, [str(p) for p in analysis.files]]


def _listen(room: Room, c: dict[str, Any], state: Session | None, data: Any) -> list[Any]:
    try:
        gate = room.gate.listen(state, (data or {}).get("reports", [])
                                if isinstance(data, dict) else data)
    except EnsembleError as exc:
        return _updates(GATE_OUTPUTS, c, gate=f"⚠️ {exc}")
    return _updates(GATE_OUTPUTS, c, gate=gate.text, submit=gr.update(interactive=gate.ready))


def _submit(room: Room, c: dict[str, Any], state: Session | None, form: Submission
            ) -> list[Any]:  # fmt: skip
    try:
        result = room.recorder.submit(state, form)
    except EnsembleError as exc:  # said beside Submit, where the listener is looking
        return _updates(VERDICT_OUTPUTS, c, gate=f"⚠️ **{exc}**")
    locked = gr.update(interactive=False)
    return _updates(
        VERDICT_OUTPUTS, c, reveal=result.text,
        reveal_table=gr.update(value=result.rows, visible=True), details=result.details,
        gate=room.gate.state(state).text, submit=locked, skip=locked,
        ranks=[locked] * MAX_CANDIDATES, timeline=room.songs.timeline(state),  # sources named
    )


def _queued_round(room: Room, c: dict[str, Any], state: Session | None,
                  make_input: Callable[[], Input], values: dict[str, Any],
                  progress: gr.Progress) -> Iterator[list[Any]]:
    """A round for the input ``make_input()`` gives. Rounds run one at a time (the room's line):
    while waiting, the listener sees their place and the estimated wait, every second."""
    try:
        given = make_input()
    except EnsembleError as exc:
        yield _failed(c, state, exc)
        return
    ticket, wait = room.queue.join(), 0.0  # the first look says at once who is ahead
    try:
        while not room.queue.wait_turn(ticket, timeout=wait):
            yield _updates(ROUND_OUTPUTS, c, queue=_queue_text(room, ticket))
            wait = 1.0
        yield _updates(ROUND_OUTPUTS, c, queue="Your round is being prepared.")
        yield _run(room, c, state, given, values, progress, ticket)
    finally:
        room.queue.leave(ticket)  # also when the page went away while waiting


def _song_files(room: Room, state: Session | None) -> list[Any]:
    try:
        files = room.songs.files(state)
    except EnsembleError as exc:
        return [gr.skip(), f"⚠️ {exc}"]
    return [gr.update(value=[str(p) for p in files], visible=True),
            "The whole song, performed: mix, MIDI, provenance, stems."]


def launch(demo: gr.Blocks, room: Room, **kwargs: Any) -> Any:
    """Start the server with the app's look, the clip route and the idle-session sweep;
    ``kwargs`` override (tests pass a free port)."""
    options: dict[str, Any] = {
        "server_name": os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),
        "theme": gr.themes.Soft(),
        "css": CSS,
        "footer_links": ["gradio"],
        "max_file_size": MAX_FILE_SIZE,
        "app_kwargs": {"middleware": [Middleware(MediaRoute, registry=room.media)],
                       "lifespan": _sweeper(room)},
    }
    options.update(kwargs)
    return demo.launch(**options)


def _sweeper(room: Room) -> Any:
    """Every minute (or half the time limit), end sessions idle past the time limit (API
    clients never close a page)."""

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        async def sweep_forever() -> None:
            while True:
                await asyncio.sleep(min(SWEEP_EVERY_S, room.config.session_ttl_s / 2))
                await asyncio.to_thread(room.sessions.sweep)

        task = asyncio.create_task(sweep_forever())
        try:
            yield
        finally:
            task.cancel()

    return lifespan


def _upload_folder() -> None:
    """Uploads go to a folder this run owns, so those left by a crash are removed on the next
    start (with the room's own leftovers, same prefix)."""
    if not os.environ.get("GRADIO_TEMP_DIR"):
        parent = Path(tempfile.gettempdir())
        remove_orphans(parent, WORK_PREFIX)
        os.environ["GRADIO_TEMP_DIR"] = str(claim(parent / f"{WORK_PREFIX}uploads-{os.getpid()}"))


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    _upload_folder()
    try:
        room = Room.from_config(RoomConfig.from_env())
    except EnsembleError as exc:  # e.g. no checkpoints yet: one readable line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    room.warm_up()
    launch(build_demo(room), room)
    return 0


if __name__ == "__main__":
    sys.exit(main())
