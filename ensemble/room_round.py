"""The round renderer: each retrieved continuation performed by the ensemble, measured, drawn and
written under a random name, ready to be shown blind.

Names are random per round (``candidate-<random>.wav``), so neither a file name, a URL nor a
plot title gives the model's rank away, and a clip heard in one round is not recognisable by its
name in the next.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ensemble.audio import write_audio
from ensemble.config import SAMPLE_RATE
from ensemble.metrics import SongMetrics, song_metrics
from ensemble.mix import downmix
from ensemble.perform import Ensemble, PerformSettings
from ensemble.rag import Continuation

if TYPE_CHECKING:
    import plotly.graph_objects as go

Progress = Callable[[float, str], None]
RENDER_WORKERS = 2  # candidates rendered at once: one per core of the 2-core target machine
CANDIDATE_PLOT_HEIGHT = 380
PERFORMANCE_COLUMNS = [
    "signal", "duration (s)", "peak", "average energy", "dynamic range (dB)",
    "melodic complexity", "voiced share", "median f0 (Hz)",
]


@dataclass
class Rendered:
    """One candidate as the listener gets it (indexed like the continuations)."""

    audio_path: Path
    duration_s: float
    metrics: SongMetrics


def random_name(stem: str, suffix: str = ".wav") -> str:
    return f"{stem}-{secrets.token_hex(6)}{suffix}"


def render_candidates(
    ensemble: Ensemble,
    continuations: list[Continuation],
    lineup: tuple[list[str], str, PerformSettings],
    folder: Path,
    report: Progress,
) -> list[Rendered]:
    """Perform every continuation with ``lineup`` = (instruments, leader, settings)."""
    instruments, leader, settings = lineup
    k = len(continuations)

    def prepare(index: int) -> Rendered:
        item = continuations[index]
        raw = item.audio if item.audio is not None else np.zeros(0, np.float32)
        sound = ensemble.perform(raw, instruments, leader, settings).mix
        path = write_audio(folder / random_name("candidate"), sound)
        return Rendered(path, len(sound) / SAMPLE_RATE, song_metrics(downmix(sound)))

    # Decoders run batch-1 GRUs on one intra-op thread (see ensemble.threads) and release
    # the GIL, so two candidates render at once on two cores.
    report(0.35, f"Rendering {k} candidates through the ensemble")
    done: dict[int, Rendered] = {}
    with ThreadPoolExecutor(RENDER_WORKERS, thread_name_prefix="render") as pool:
        futures = {pool.submit(prepare, index): index for index in range(k)}
        for future in as_completed(futures):
            done[futures[future]] = future.result()
            report(0.35 + 0.6 * len(done) / k,
                   f"Rendered and measured {len(done)} of {k} candidates")
    return [done[i] for i in range(k)]


def still(figure: go.Figure) -> go.Figure:
    """No drag-to-zoom: on a phone a swipe over the plot then scrolls the page."""
    figure.update_xaxes(fixedrange=True)
    figure.update_yaxes(fixedrange=True)
    figure.update_layout(dragmode=False)
    return figure


def candidate_figure(metrics: SongMetrics, title: str, seams: list[float]) -> go.Figure:
    from ensemble.plots import song_figure

    figure = song_figure({title: metrics}, title)
    for i, seam in enumerate(seams):
        figure.add_vline(x=seam, line={"dash": "dot", "color": "#555", "width": 1})
        # At the bottom: the subplot titles sit at the top centre, where the first seam falls.
        figure.add_annotation(
            x=seam, y=0.0, yref="paper", yanchor="bottom", showarrow=False,
            text="your input │ continuation" if i == 0 else "│ seam",
            font={"size": 11, "color": "#444"}, bgcolor="rgba(255,255,255,0.8)",
        )
    figure.update_layout(height=CANDIDATE_PLOT_HEIGHT, showlegend=False)
    return still(figure)


def overview_figure(named: dict[str, SongMetrics], seam_s: float) -> go.Figure:
    """All candidates' loudness (RMS) on one plot: one line each, toggled from the legend."""
    import plotly.graph_objects as go

    from ensemble.plots import PALETTE

    figure = go.Figure()
    for i, (name, m) in enumerate(named.items()):
        figure.add_trace(go.Scatter(
            x=m.dynamics.times_s, y=m.dynamics.rms, mode="lines", name=name,
            line={"color": PALETTE[i % len(PALETTE)], "width": 1.5},
            hovertemplate="%{x:.2f} s, RMS %{y:.3f}<extra>" + name + "</extra>",
        ))
    figure.add_vline(x=seam_s, line={"dash": "dot", "color": "#555", "width": 1},
                     annotation_text="your input │ continuation", annotation_position="top")
    figure.update_layout(
        title="All candidates: loudness over time (click a name to hide it)", height=300,
        margin={"l": 50, "r": 20, "t": 50, "b": 40}, template="plotly_white",
        xaxis_title="time (s)", yaxis_title="RMS", legend={"orientation": "h", "y": -0.25},
    )
    return still(figure)


def performance_figure(named: dict[str, SongMetrics]) -> go.Figure:
    """Input and mix shown; each stem one legend click away (the mix's melody is the
    predominant one, as pYIN hears it)."""
    from ensemble.plots import song_figure

    figure = song_figure(named, "Input and mix (click a stem's name to show it)")
    stems = set(named) - {"input", "mix"}
    figure.for_each_trace(lambda t: t.update(visible="legendonly") if t.name in stems else None)
    figure.layout.annotations[1].text = "Melody (pYIN f0; for the mix, the predominant melody)"
    return still(figure)


def performance_rows(named: dict[str, SongMetrics]) -> list[list[Any]]:
    keys = ["duration_s", "peak", "average_energy", "dynamic_range_db", "melodic_complexity",
            "voiced_share", "median_f0_hz"]
    return [[name, *(m.summary()[k] for k in keys)] for name, m in named.items()]
