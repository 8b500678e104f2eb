"""The listening room's figures: each candidate's waveform, melody and loudness with its seams,
all candidates on one plot, and the performance's song metrics as a figure and a table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ensemble.metrics import SongMetrics

if TYPE_CHECKING:
    import plotly.graph_objects as go

CANDIDATE_PLOT_HEIGHT = 380
PERFORMANCE_COLUMNS = [
    "signal", "duration (s)", "peak", "average energy", "dynamic range (dB)",
    "melodic complexity", "voiced share", "median f0 (Hz)",
]


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
