"""Plots of song metrics: interactive plotly figures (app, notebooks) and static PNGs (README).

Three views per signal, as the seed defines them: waveform texture, pYIN melody, RMS dynamics.
Several signals (input, mix, stems) can share one figure so they are compared on the same axes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ensemble.metrics import SongMetrics

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from ensemble.song import Song

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
TITLES = ("Waveform (texture)", "Melody (pYIN f0)", "Dynamics (RMS)")


def song_figure(named: dict[str, SongMetrics], title: str = "") -> go.Figure:
    """A 3-row plotly figure (waveform, melody, RMS) with one trace group per named signal."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.07, subplot_titles=TITLES
    )
    for i, (name, m) in enumerate(named.items()):
        color = PALETTE[i % len(PALETTE)]
        t = m.waveform_times_s
        fig.add_trace(
            go.Scatter(
                x=np.concatenate([t, t[::-1]]),
                y=np.concatenate([m.waveform_max, m.waveform_min[::-1]]),
                fill="toself",
                line={"width": 0.5, "color": color},
                opacity=0.55,
                name=name,
                legendgroup=name,
                hoverinfo="skip",
            ),
            row=1,
            col=1,
        )
        if m.melody is not None:
            trace = _line(m.melody.times_s, m.melody.f0_hz, name, color, "%{y:.1f} Hz")
            fig.add_trace(trace, row=2, col=1)
        fig.add_trace(
            _line(m.dynamics.times_s, m.dynamics.rms, name, color, "RMS %{y:.4f}"), row=3, col=1
        )
    fig.update_yaxes(title_text="amplitude", range=[-1, 1], row=1, col=1)
    # Note-like ticks: plotly's default log ticks (2, 3, 4... per decade) crowd a 3-octave range.
    fig.update_yaxes(
        title_text="Hz", type="log", tickvals=[55, 110, 220, 440, 880, 1760], row=2, col=1
    )
    fig.update_yaxes(title_text="RMS", row=3, col=1)
    fig.update_xaxes(title_text="time (s)", row=3, col=1)
    fig.update_layout(
        title=title or None,
        height=620,
        margin={"l": 60, "r": 20, "t": 60, "b": 40},
        legend={"orientation": "h", "y": -0.12},
        template="plotly_white",
    )
    return fig


def _line(x: np.ndarray, y: np.ndarray, name: str, color: str, hover: str) -> go.Scatter:
    """One signal's line in the melody or RMS row (its legend entry lives on the waveform)."""
    import plotly.graph_objects as go

    return go.Scatter(
        x=x,
        y=y,
        mode="lines",
        line={"color": color},
        name=name,
        legendgroup=name,
        showlegend=False,
        connectgaps=False,
        hovertemplate="%{x:.2f} s<br>" + hover + "<extra>" + name + "</extra>",
    )


def save_png(named: dict[str, SongMetrics], path: str | Path, title: str = "") -> Path:
    """The same three views as a static PNG (matplotlib, no browser needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(3, 1, figsize=(10, 7), sharex=True)
    for i, (name, m) in enumerate(named.items()):
        color = PALETTE[i % len(PALETTE)]
        axes[0].fill_between(
            m.waveform_times_s,
            m.waveform_min,
            m.waveform_max,
            color=color,
            alpha=0.5,
            linewidth=0,
            label=name,
        )
        if m.melody is not None:
            axes[1].plot(m.melody.times_s, m.melody.f0_hz, color=color, linewidth=1.2)
        axes[2].plot(m.dynamics.times_s, m.dynamics.rms, color=color, linewidth=1.0)
    for ax, label in zip(axes, TITLES, strict=True):
        ax.set_title(label, fontsize=10, loc="left")
        ax.grid(alpha=0.3)
    axes[0].set_ylim(-1, 1)
    axes[1].set_yscale("log")
    axes[1].set_ylabel("Hz")
    axes[2].set_ylabel("RMS")
    axes[2].set_xlabel("time (s)")
    axes[0].legend(loc="upper right", fontsize=8, ncol=min(4, len(named)))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def song_timeline_figure(song: Song, reveal: bool = True) -> go.Figure:
    """The song so far as one bar of sections: the input, then each kept section, labelled with
    its source and start when ``reveal`` (after ranking), else only "section N"."""
    import plotly.graph_objects as go

    blocks = [("input", 0.0, song.input_seconds, "the input")]
    for n, section in enumerate(song.sections, start=1):
        where = f"{section.source} @ {section.source_start_s:.1f} s"
        blocks.append((f"section {n}", section.song_start_s, section.seconds,
                       where if reveal else "revealed after ranking"))  # fmt: skip
    fig = go.Figure()
    for i, (name, start, length, detail) in enumerate(blocks):
        fig.add_trace(
            go.Bar(
                x=[length],
                base=[start],
                y=["song"],
                orientation="h",
                name=name,
                marker_color=PALETTE[i % len(PALETTE)],
                text=[name if not reveal or i == 0 else f"{name}: {detail}"],
                textposition="inside",
                hovertemplate=f"{name}<br>{start:.1f}–{start + length:.1f} s<br>{detail}"
                "<extra></extra>",
            )
        )
    fig.update_layout(
        barmode="overlay",
        height=150,
        showlegend=False,
        margin={"l": 50, "r": 20, "t": 30, "b": 35},
        title=f"The song so far: {song.duration_s:.1f} s, {len(song.sections)} section(s)",
        xaxis_title="time (s)",
        template="plotly_white",
    )
    return fig
