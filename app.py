"""Ensemble's listening room (Gradio): perform an input, then rank its continuations blind.

UI wiring only: every decision lives in `ensemble.listening` (handlers) and the library.
Per-listener values are in a `gr.State` (`Session`); the `Room` holds what all sessions share.

    python app.py          # 0.0.0.0:7860 (GRADIO_SERVER_PORT / GRADIO_SERVER_NAME respected)
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from ensemble.errors import EnsembleError
from ensemble.listening import (
    DEFAULT_TOP_K,
    LETTERS,
    MAX_CANDIDATES,
    MAX_HOPS,
    PERFORMANCE_COLUMNS,
    REVEAL_COLUMNS,
    Room,
    RoomConfig,
    RoundOptions,
    Session,
)
from ensemble.perform import PerformSettings

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
CSS = """
.candidate {border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 6px;}
#gate {font-size: 0.95em;}
"""
INTRO = """# Ensemble — the listening room
1. **Give it audio**: upload or record a melody, or pick an example. 2. **Perform**: your melody
drives the leader, the conductor plays the others. 3. **Listen blind**: the retrieved
continuations appear in a shuffled order as Candidates A, B, C…; play each for a few seconds,
rank them, and submit. Only then are the scores and the model's ranks revealed."""


def build_demo(room: Room) -> gr.Blocks:
    """The page; ``room`` supplies models, index, store and defaults."""
    weights = room.weights
    with gr.Blocks(title="Ensemble — listening room", delete_cache=(3600, 3600)) as demo:
        session = gr.State(None, delete_callback=room.end_session)
        gr.Markdown(INTRO)
        room_info = gr.Markdown(room.describe(), elem_id="room-info")
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                audio_in = gr.Audio(
                    sources=["upload", "microphone"], type="filepath", label="Your audio",
                    elem_id="audio-in",
                )
                examples = sorted(EXAMPLES_DIR.glob("*.wav"))
                if examples:
                    gr.Examples([[str(p)] for p in examples], inputs=[audio_in],
                                label="Examples")
                lineup = room.default_lineup()
                leaders, leader_value = room.leader_choices(lineup)
                instruments = gr.CheckboxGroup(
                    room.instruments, value=lineup, label="Instruments", elem_id="instruments"
                )
                leader = gr.Dropdown(
                    leaders, value=leader_value, label="Leader (plays your melody)",
                    elem_id="leader",
                )
                with gr.Accordion("Advanced", open=False):
                    top_k = gr.Slider(1, MAX_CANDIDATES, value=DEFAULT_TOP_K, step=1,
                                      label="Top-K continuations")
                    hops = gr.Slider(1, MAX_HOPS, value=1, step=1,
                                     label="Hops (retrieved segments chained)")
                    gr.Markdown("Score weights (composite = weighted sum):")
                    w_rel, w_pitch, w_chroma, w_loud = (
                        _weight_slider(weights[name], top, label)
                        for (name, top), label in zip(
                            WEIGHT_TOPS.items(),
                            ("relevance (style)", "pitch coherence (seam)",
                             "key coherence (seam)", "loudness coherence (seam)"),
                            strict=True,
                        )
                    )
                    auto = gr.Checkbox(True, label="Auto-adjust pitch and loudness to each "
                                       "instrument")
                    octave = gr.Slider(-2, 2, value=0, step=1, label="Octave shift")
                    semitone = gr.Slider(-12, 12, value=0, step=1, label="Semitone shift")
                    autotune = gr.Slider(0, 1, value=0, step=0.1, label="Autotune")
                    quiet = gr.Slider(-90, -20, value=-60, step=1,
                                      label="Quiet threshold (dB): quieter input stays silent")
                    trim = gr.Checkbox(False, label="Use the first 30 s of longer recordings")
                run = gr.Button("Perform and find continuations", variant="primary",
                                elem_id="run")
            with gr.Column(scale=2):
                status = gr.Markdown(elem_id="status")
                mix = gr.Audio(type="filepath", label="Ensemble performance (mix)",
                               interactive=False, buttons=["download"], elem_id="mix")
                with gr.Accordion("Download the mix, the stems and metrics.json", open=False):
                    files = gr.File(show_label=False, file_count="multiple", interactive=False)
                with gr.Accordion("Song metrics of the performance: waveform, pYIN melody, RMS",
                                  open=False):
                    perf_plot = gr.Plot(show_label=False)
                    perf_table = gr.Dataframe(headers=PERFORMANCE_COLUMNS, interactive=False)
                gr.Markdown("## Continuations — listen blind, then rank")
                gate = gr.Markdown(room.gate(None).text, elem_id="gate")
                slots = []
                for slot in range(MAX_CANDIDATES):
                    letter = LETTERS[slot]
                    with gr.Group(visible=False, elem_classes="candidate",
                                  elem_id=f"candidate-{letter}") as box:
                        with gr.Row(equal_height=True):
                            player = gr.Audio(type="filepath", label=f"Candidate {letter}",
                                              interactive=False, buttons=["download"],
                                              elem_id=f"player-{letter}", scale=3)
                            rank = gr.Dropdown([], value=None, label="Your rank",
                                               elem_id=f"rank-{letter}", scale=1,
                                               min_width=120)
                        plot = gr.Plot(show_label=False)
                    slots.append((box, player, plot, rank))
                submit = gr.Button("Submit ranking", variant="primary", interactive=False,
                                   elem_id="submit")
                reveal = gr.Markdown(elem_id="reveal")
                reveal_table = gr.Dataframe(headers=REVEAL_COLUMNS, visible=False,
                                            interactive=False, label="Revealed scores",
                                            elem_id="reveal-table")

        # Each page load picks up weights a `ratings fit` wrote while the app was running.
        demo.load(lambda: _page_weights(room), None, [w_rel, w_pitch, w_chroma, w_loud, room_info],
                  api_name=False, show_progress="hidden")

        instruments.change(
            lambda chosen, current: _leader_update(room, chosen, current), [instruments, leader],
            leader, api_name=False,
        )

        controls = [audio_in, instruments, leader, top_k, hops, w_rel, w_pitch, w_chroma,
                    w_loud, auto, octave, semitone, autotune, quiet, trim]
        slot_outputs = [c for s in slots for c in s]
        round_outputs = [status, mix, files, gate, submit, reveal, reveal_table, session,
                         *slot_outputs]

        def on_run(state: Session | None, *values: Any,
                   progress: gr.Progress = gr.Progress()) -> list[Any]:  # noqa: B008
            return _run(room, state, values, progress)

        def on_analyse(state: Session | None,
                       progress: gr.Progress = gr.Progress()) -> list[Any]:  # noqa: B008
            return _analyse(room, state, progress)

        # The song metrics of the performance follow as a second step, so the candidates can be
        # heard without waiting for five more pYIN passes (it does nothing after a failed run).
        run.click(
            on_run, [session, *controls], round_outputs, api_name="perform",
            concurrency_limit=1, concurrency_id="rounds",
        ).then(
            on_analyse, session, [perf_plot, perf_table, files], api_name="analyse",
            concurrency_id="rounds",
        )

        for slot, (_, player, _, _) in enumerate(slots):
            player.play(_listen(room.listen_start, slot), session, [gate, submit],
                        api_name=f"play_{LETTERS[slot]}", concurrency_limit=None,
                        show_progress="hidden")
            for event in (player.pause, player.stop):
                event(_listen(room.listen_stop, slot), session, [gate, submit],
                      api_name=False if event == player.stop else f"pause_{LETTERS[slot]}",
                      concurrency_limit=None, show_progress="hidden")

        ranks = [s[3] for s in slots]
        submit.click(
            lambda state, *values: _submit(room, state, values),
            [session, *ranks],
            [reveal, reveal_table, submit, gate, *ranks],
            api_name="submit",
            concurrency_limit=None,
        )
    demo.queue(max_size=64)
    return demo


WEIGHT_TOPS = {"relevance": 2.0, "pitch_coherence": 1.0, "chroma_coherence": 1.0,
               "loudness_coherence": 1.0}


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


def _leader_update(room: Room, chosen: list[str] | None, current: str | None) -> dict[str, Any]:
    pitched, value = room.leader_choices(chosen or [], current)
    return gr.update(choices=pitched, value=value)


def _run(room: Room, state: Session | None, values: tuple[Any, ...],
         progress: gr.Progress) -> list[Any]:
    (path, instruments, leader, top_k, hops, w_rel, w_pitch, w_chroma, w_loud, auto, octave,
     semitone, autotune, quiet, trim) = values
    session = state or Session()
    options = RoundOptions(
        instruments=list(instruments or []),
        leader=leader,
        top_k=int(top_k),
        hops=int(hops),
        weights={"relevance": w_rel, "pitch_coherence": w_pitch, "chroma_coherence": w_chroma,
                 "loudness_coherence": w_loud},
        perform=PerformSettings(auto_adjust=bool(auto), octave_shift=int(octave),
                                semitone_shift=float(semitone), autotune=float(autotune),
                                quiet_threshold_db=float(quiet)),
        trim=bool(trim),
    )
    try:
        result = room.run_round(session, path, options,
                                lambda fraction, text: progress(fraction, desc=text))
    except EnsembleError as exc:
        gr.Warning(str(exc))
        # The page stays as it was (the previous round is still playable); only the status says
        # what went wrong.
        return [f"⚠️ **{exc}**", *[gr.skip()] * (7 + 4 * MAX_CANDIDATES)]
    notes = "".join(f"\n- {m}" for m in result.messages)
    status = (f"Ready in {result.seconds:.1f} s: the performance, and "
              f"{len(result.candidates)} candidates to rank.{notes}")
    k = len(result.candidates)
    rank_choices = [(f"{r}" + (" (best)" if r == 1 else ""), r) for r in range(1, k + 1)]
    slot_values: list[Any] = []
    for slot in range(MAX_CANDIDATES):
        if slot < k:
            shown = result.candidates[slot]
            slot_values += [gr.update(visible=True), str(shown.audio_path), shown.figure,
                            gr.update(choices=rank_choices, value=None, interactive=True)]
        else:
            slot_values += [gr.update(visible=False), None, None,
                            gr.update(choices=[], value=None)]
    return [
        status, str(result.mix_path), [str(p) for p in result.files], result.gate.text,
        gr.update(interactive=result.gate.ready), "", gr.update(value=None, visible=False),
        session, *slot_values,
    ]


def _analyse(room: Room, state: Session | None, progress: gr.Progress) -> list[Any]:
    analysis = room.analyse_performance(
        state, lambda fraction, text: progress(fraction, desc=text)
    )
    if analysis is None:
        return [gr.skip(), gr.skip(), gr.skip()]
    return [analysis.figure, analysis.table, [str(p) for p in analysis.files]]


def _listen(handler: Callable[..., Any], slot: int) -> Callable[[Session | None], list[Any]]:
    def on_event(state: Session | None) -> list[Any]:
        gate = handler(state, slot)
        return [gate.text, gr.update(interactive=gate.ready)]

    return on_event


def _submit(room: Room, state: Session | None, ranks: tuple[Any, ...]) -> list[Any]:
    try:
        result = room.submit(state, ranks)
    except EnsembleError as exc:
        gr.Warning(str(exc))
        return [f"⚠️ **{exc}**", gr.skip(), gr.skip(), gr.skip(), *[gr.skip()] * len(ranks)]
    return [
        result.text,
        gr.update(value=result.rows, visible=True),
        gr.update(interactive=False),
        room.gate(state).text,
        *[gr.update(interactive=False)] * len(ranks),
    ]


def launch(demo: gr.Blocks, **kwargs: Any) -> Any:
    """Start the server with the app's look; ``kwargs`` override (tests pass a free port)."""
    options: dict[str, Any] = {
        "server_name": os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),
        "theme": gr.themes.Soft(),
        "css": CSS,
        "footer_links": ["gradio"],
    }
    options.update(kwargs)
    return demo.launch(**options)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        room = Room(RoomConfig.from_env())
    except EnsembleError as exc:  # e.g. no checkpoints yet: one readable line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    room.warm_up()
    launch(build_demo(room))
    return 0


if __name__ == "__main__":
    sys.exit(main())
