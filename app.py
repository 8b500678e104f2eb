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
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from starlette.middleware import Middleware

from ensemble.errors import EnsembleError
from ensemble.listening import (
    APP_MAX_SECONDS,
    DEFAULT_TOP_K,
    DETAIL_COLUMNS,
    LETTERS,
    MAX_CANDIDATES,
    MAX_HOPS,
    PERFORMANCE_COLUMNS,
    REVEAL_COLUMNS,
    WORK_PREFIX,
    Input,
    Room,
    RoomConfig,
    RoundOptions,
    Session,
    Submission,
)
from ensemble.perform import PerformSettings
from ensemble.room_files import claim, remove_orphans
from ensemble.room_media import MediaRoute
from ensemble.room_page import LOCAL_ID_JS, PLAYERS_CSS, PLAYERS_JS, players_html

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
ROUND_OUTPUTS = 15 + 2 * MAX_CANDIDATES  # what the perform event updates (see _wire)
WEIGHT_TOPS = {"relevance": 2.0, "pitch_coherence": 1.0, "chroma_coherence": 1.0,
               "loudness_coherence": 1.0, "rhythm_coherence": 1.0}


@dataclass
class Slot:
    """One candidate's rank control and (collapsed) plot."""

    rank: gr.Dropdown
    plot: gr.Plot


def build_demo(room: Room) -> gr.Blocks:
    """The page; ``room`` supplies models, index, store and defaults."""
    # No `delete_cache`: it ages out the examples' cached files too; the room removes each
    # session's uploads and copies itself when the session ends.
    with gr.Blocks(title="Ensemble — listening room") as demo:
        session = gr.State(None, time_to_live=room.config.session_ttl_s,
                           delete_callback=room.end_session)
        local_id = gr.Textbox(visible=False)
        reports = gr.Textbox(visible=False)  # the /listen API's input (the page uses events)
        gr.Markdown(INTRO)
        room_info = gr.Markdown(room.describe(), elem_id="room-info")
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                inputs = _input_column(room)
            with gr.Column(scale=2):
                out = _output_column(room)
        _wire(demo, room, session, local_id, reports, room_info, inputs, out)
    demo.queue(max_size=64)
    room.keep_copies_in(Path(demo.GRADIO_CACHE))  # a session's uploads and copies go with it
    return demo


def _input_column(room: Room) -> dict[str, Any]:
    c: dict[str, Any] = {}
    c["audio"] = gr.Audio(
        sources=["upload", "microphone"], type="filepath", elem_id="audio-in",
        label=f"Your audio (up to {APP_MAX_SECONDS:g} s; files up to {MAX_FILE_SIZE.upper()})",
    )
    c["upload_note"] = gr.Markdown(elem_id="upload-note")
    examples = sorted(EXAMPLES_DIR.glob("*.wav"))
    if examples:
        gr.Examples([[str(p)] for p in examples], inputs=[c["audio"]], label="Examples")
    leader = room.default_leader()
    c["leader"] = gr.Dropdown(room.leaders, value=leader, label="Leader (plays your melody)",
                              elem_id="leader")
    c["band"] = gr.CheckboxGroup(room.band_choices(leader), value=room.default_band(leader),
                                 label="Band (the conductor plays these)", elem_id="instruments")
    with gr.Accordion("Advanced", open=False):
        c["top_k"] = gr.Slider(1, MAX_CANDIDATES, value=DEFAULT_TOP_K, step=1,
                               label="Top-K continuations")
        c["hops"] = gr.Slider(1, MAX_HOPS, value=1, step=1,
                              label="Hops (retrieved segments chained)")
        gr.Markdown("Score weights (composite = weighted sum):")
        c["weights"] = [
            _weight_slider(room.weights[name], top, label)
            for (name, top), label in zip(
                WEIGHT_TOPS.items(),
                ("relevance (style)", "pitch coherence (seam)", "key coherence (seam)",
                 "loudness coherence (seam)", "rhythm coherence (seam: tempo, meter)"),
                strict=True,
            )
        ]
        c["perform"] = [
            gr.Checkbox(True, label="Auto-adjust pitch and loudness to each instrument"),
            gr.Slider(-2, 2, value=0, step=1, label="Octave shift"),
            gr.Slider(-12, 12, value=0, step=1, label="Semitone shift"),
            gr.Slider(0, 1, value=0, step=0.1, label="Autotune"),
            gr.Slider(-90, -20, value=-60, step=1,
                      label="Quiet threshold (dB): quieter input stays silent"),
        ]
        c["trim"] = gr.Checkbox(False, label=f"Use the first {APP_MAX_SECONDS:g} s of longer "
                                "recordings")
    c["run"] = gr.Button("Perform and find continuations", variant="primary", elem_id="run")
    return c


def _output_column(room: Room) -> dict[str, Any]:
    c: dict[str, Any] = {}
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
    with gr.Group(elem_id="judge"):
        c["gate"] = gr.Markdown(room.gate(None).text, elem_id="gate")
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
    c["reveal"] = gr.Markdown(elem_id="reveal")
    _song_controls(c)
    c["reveal_table"] = gr.Dataframe(headers=REVEAL_COLUMNS, visible=False, interactive=False,
                                     label="Revealed", elem_id="reveal-table")
    with gr.Accordion("Details: every score and measurement", open=False):
        c["details"] = gr.Dataframe(headers=DETAIL_COLUMNS, interactive=False)
    return c


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
        c["song_files"] = gr.File(show_label=False, file_count="multiple", interactive=False,
                                  elem_id="song-files")


def _wire(demo: gr.Blocks, room: Room, session: gr.State, local_id: gr.Textbox,
          reports: gr.Textbox, room_info: gr.Markdown, i: dict[str, Any],
          o: dict[str, Any]) -> None:
    # Each page load starts the session (with the browser's local id) and picks up weights a
    # `ratings fit` wrote while the app was running.
    demo.load(lambda state, lid: [room.start_session(state, lid), *_page_weights(room)],
              [session, local_id], [session, *i["weights"], room_info], js=LOCAL_ID_JS,
              api_name=False, show_progress="hidden")
    i["audio"].change(lambda state, path, trim: _arrived(room, state, path, trim),
                      [session, i["audio"], i["trim"]], [i["upload_note"], o["status"]],
                      api_name=False, show_progress="hidden")
    i["leader"].change(lambda lead, band: _band_update(room, lead, band), [i["leader"], i["band"]],
                       i["band"], api_name=False, show_progress="hidden")
    controls = [i["audio"], i["band"], i["leader"], i["top_k"], i["hops"], *i["weights"],
                *i["perform"], i["trim"]]
    judge = [o["gate"], o["submit"], o["skip"], o["reveal"], o["reveal_table"], o["details"],
             o["also"], o["reason"]]
    round_outputs = [o["queue"], o["status"], o["mix"], o["files"], o["players"], o["overview"],
                     *judge, session, *o["ranks"], *o["slots_plots"]]

    def on_run(state: Session | None, *values: Any,
               progress: gr.Progress = gr.Progress()) -> Iterator[list[Any]]:  # noqa: B008
        # The audio is read first (a broken file is named at once, not after the wait).
        yield from _queued_round(room, state, lambda: room.read_input(values[0], bool(values[-1])),
                                 values, progress)

    def on_keep(state: Session | None, letter: str | None, *values: Any,
                progress: gr.Progress = gr.Progress()) -> Iterator[list[Any]]:  # noqa: B008
        yield from _queued_round(room, state, lambda: room.keep(state, letter), values, progress)

    def on_undo(state: Session | None, *values: Any,
                progress: gr.Progress = gr.Progress()) -> Iterator[list[Any]]:  # noqa: B008
        yield from _queued_round(room, state, lambda: room.undo(state), values, progress)

    def on_analyse(state: Session | None,
                   progress: gr.Progress = gr.Progress()) -> list[Any]:  # noqa: B008
        return _analyse(room, state, progress)

    # The song metrics follow as a second step, so the candidates can be heard without
    # waiting for five more pYIN passes.
    analysed = [o["perf_plot"], o["perf_table"], o["files"]]
    for button, handler, inputs, name in (
        (i["run"], on_run, [session, *controls], "perform"),
        (o["keep"], on_keep, [session, o["keep_choice"], *controls], "keep"),
        (o["undo"], on_undo, [session, *controls], "undo"),
    ):
        button.click(
            handler, inputs, round_outputs, api_name=name, concurrency_limit=None,
            show_progress_on=[o["status"]],
        ).then(
            lambda state: room.timeline(state), session, o["timeline"], api_name=False,
            show_progress="hidden",
        ).then(
            on_analyse, session, analysed, api_name="analyse" if name == "perform" else False,
            concurrency_limit=1, concurrency_id="analyse",
        )
    o["song_download"].click(lambda state: _song_files(room, state), session,
                             [o["song_files"], o["song_note"]], api_name="song")
    _wire_judging(room, session, reports, o)


def _wire_judging(room: Room, session: gr.State, reports: gr.Textbox, o: dict[str, Any]) -> None:
    """The players' reports, the rank controls, Submit and Skip."""
    gate_outputs = [o["gate"], o["submit"], o["skip"]]

    def on_players(state: Session | None, evt: gr.EventData) -> list[Any]:
        return _listen(room, state, evt._data)

    # "multiple": a pause and the next play are reported together; "once" would drop one.
    o["players"].input(on_players, [session], gate_outputs, api_name=False,
                       concurrency_limit=None, show_progress="hidden", trigger_mode="multiple")
    reports.submit(lambda state, text: _listen(room, state, text), [session, reports],
                   gate_outputs, api_name="listen", concurrency_limit=None)
    for control in (*o["ranks"], o["also"]):
        control.input(_rank_choices, [session, o["also"], *o["ranks"]], o["ranks"], api_name=False,
                      show_progress="hidden")
    verdict_outputs = [o["reveal"], o["reveal_table"], o["details"], *gate_outputs, *o["ranks"],
                       o["timeline"]]
    o["submit"].click(lambda state, also, why, *ranks: _submit(room, state, Submission(
        list(ranks), tie=TIE in (also or []), all_bad=ALL_BAD in (also or []), reason=why)),
        [session, o["also"], o["reason"], *o["ranks"]], verdict_outputs, api_name="submit",
        concurrency_limit=None)
    o["skip"].click(lambda state, why: _submit(room, state, Submission([], skip=True,
                                                                       reason=why)),
                    [session, o["reason"]], verdict_outputs, api_name="skip",
                    concurrency_limit=None)


def _slider_range(value: float, top: float) -> tuple[float, float]:
    # Learned weights may be negative or large: the range always includes the value.
    return min(0.0, round(value - 0.5, 1)), max(top, round(value + 0.5, 1))


def _weight_slider(value: float, top: float, label: str) -> gr.Slider:
    low, high = _slider_range(value, top)
    return gr.Slider(low, high, value=value, step=0.01, label=label)


def _page_weights(room: Room) -> list[Any]:
    weights = room.refresh_weights()
    sliders = []
    for name, top in WEIGHT_TOPS.items():
        low, high = _slider_range(weights[name], top)
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
    offered = room.band_choices(leader)
    return gr.update(choices=offered, value=[n for n in band or [] if n in offered])


def _queue_text(room: Room, ticket: int) -> str:
    ahead, wait_s = room.queue.place(ticket)
    if ahead == 0:
        return f"Your round is next (about {wait_s:.0f} s)."
    return (f"In line: {ahead} round{'s' if ahead > 1 else ''} ahead of yours; estimated "
            f"wait about {wait_s:.0f} s.")


def _run(room: Room, state: Session | None, given: Input, values: tuple[Any, ...],
         progress: gr.Progress, ticket: int) -> list[Any]:
    (_, band, leader, top_k, hops, w_rel, w_pitch, w_chroma, w_loud, w_rhythm, auto, octave,
     semitone, autotune, quiet, trim) = values
    session = state or Session()
    options = RoundOptions(
        instruments=list(band or []), leader=leader, top_k=int(top_k), hops=int(hops),
        weights={"relevance": w_rel, "pitch_coherence": w_pitch, "chroma_coherence": w_chroma,
                 "loudness_coherence": w_loud, "rhythm_coherence": w_rhythm},
        perform=PerformSettings(auto_adjust=bool(auto), octave_shift=int(octave),
                                semitone_shift=float(semitone), autotune=float(autotune),
                                quiet_threshold_db=float(quiet)),
        trim=bool(trim),
    )
    try:
        result = room.run_round(session, given, options,
                                lambda fraction, text: progress(fraction, desc=text),
                                ticket=ticket)
    except EnsembleError as exc:
        return _failed(session, exc)
    return _round_outputs(session, result)


def _failed(session: Session | None, exc: EnsembleError) -> list[Any]:
    # One message, in the status line (no toast on top of it); the previous round stays
    # playable and is labelled as such.
    earlier = (" The results below are from your previous input."
               if session is not None and session.round_folder is not None else "")
    return ["", f"⚠️ **{exc}**{earlier}", *[gr.skip()] * (ROUND_OUTPUTS - 2)]


def _round_outputs(session: Session, result: Any) -> list[Any]:
    notes = "".join(f"\n- {m}" for m in result.messages)
    k = len(result.candidates)
    status = (f"Ready in {result.seconds:.1f} s: the performance, and {k} candidates to "
              f"judge.{notes}")
    ranks, plots = [], []
    for slot in range(MAX_CANDIDATES):
        shown = result.candidates[slot] if slot < k else None
        ranks.append(gr.update(choices=_choices(k), value=None, visible=shown is not None,
                               interactive=True))
        plots.append(gr.update(value=shown.figure if shown else None, visible=bool(shown)))
    players = players_html([(c.letter, c.url, c.need_s) for c in result.candidates])
    return [
        "", status, str(result.mix_path), [str(p) for p in result.files], players,
        result.shown.overview if result.shown else None,
        result.gate.text, gr.update(interactive=result.gate.ready),
        gr.update(interactive=k > 0), "", gr.update(value=None, visible=False), None, [], "",
        session, *ranks, *plots,
    ]


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
    analysis = room.analyse_performance(
        state, lambda fraction, text: progress(fraction, desc=text)
    )
    if analysis is None:
        return [gr.skip(), gr.skip(), gr.skip()]
    return [analysis.figure, analysis.table, [str(p) for p in analysis.files]]


def _listen(room: Room, state: Session | None, data: Any) -> list[Any]:
    try:
        gate = room.listen(state, (data or {}).get("reports", []) if isinstance(data, dict)
                           else data)
    except EnsembleError as exc:
        return [f"⚠️ {exc}", gr.skip(), gr.skip()]
    return [gate.text, gr.update(interactive=gate.ready), gr.skip()]


def _submit(room: Room, state: Session | None, form: Submission) -> list[Any]:
    n_ranks = MAX_CANDIDATES
    try:
        result = room.submit(state, form)
    except EnsembleError as exc:  # said beside Submit, where the listener is looking
        return [gr.skip()] * 3 + [f"⚠️ **{exc}**"] + [gr.skip()] * (3 + n_ranks)
    return [
        result.text, gr.update(value=result.rows, visible=True), result.details,
        room.gate(state).text, gr.update(interactive=False), gr.update(interactive=False),
        *[gr.update(interactive=False)] * n_ranks, room.timeline(state),  # sources revealed
    ]


def _queued_round(room: Room, state: Session | None, make_input: Any, values: tuple[Any, ...],
                  progress: gr.Progress) -> Iterator[list[Any]]:
    """A round for the input ``make_input()`` gives. Rounds run one at a time (the room's line):
    while waiting, the listener sees their place and the estimated wait, every second."""
    try:
        given = make_input()
    except EnsembleError as exc:
        yield _failed(state, exc)
        return
    ticket, wait = room.queue.join(), 0.0  # the first look says at once who is ahead
    try:
        while not room.queue.wait_turn(ticket, timeout=wait):
            yield [_queue_text(room, ticket), *[gr.skip()] * (ROUND_OUTPUTS - 1)]
            wait = 1.0
        yield ["Your round is being prepared.", *[gr.skip()] * (ROUND_OUTPUTS - 1)]
        yield _run(room, state, given, values, progress, ticket)
    finally:
        room.queue.leave(ticket)  # also when the page went away while waiting


def _song_files(room: Room, state: Session | None) -> list[Any]:
    try:
        files = room.song_files(state)
    except EnsembleError as exc:
        return [gr.skip(), f"⚠️ {exc}"]
    return [[str(p) for p in files], "The whole song, performed: mix, MIDI, provenance, stems."]


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
                await asyncio.to_thread(room.sweep)

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
        room = Room(RoomConfig.from_env())
    except EnsembleError as exc:  # e.g. no checkpoints yet: one readable line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    room.warm_up()
    launch(build_demo(room), room)
    return 0


if __name__ == "__main__":
    sys.exit(main())
