"""Song metrics as the seed defines them: waveform texture, pYIN melody, RMS dynamics.

Pure functions of a (N,) mono signal at SAMPLE_RATE. Definitions:

- waveform: y(t), kept as a min/max envelope for plotting;
- melody: pYIN f0 trajectory; melodic complexity = normalised pitch variance over voiced frames,
  Var(f0) / mean(f0)^2 (the squared coefficient of variation), so a steady tone scores ~0 and the
  value does not depend on register;
- dynamics: RMS(t) = sqrt(mean(y_i^2)) over short windows; average energy = mean(RMS^2);
  dynamic range = 95th - 5th percentile of RMS in dB over non-silent windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ensemble.config import SAMPLE_RATE

PYIN_HOP = 512  # 32 ms: a melody plot needs no finer grid, and pYIN's cost scales with frames
PYIN_FRAME = 2048
PYIN_FMIN, PYIN_FMAX = 65.0, 2093.0
# Quarter-semitone pitch grid and 50 thresholds: ~5x faster than librosa's defaults (0.1, 100)
# with the same median f0 on test tones; the HMM's cost is frames x pitch bins.
PYIN_RESOLUTION, PYIN_THRESHOLDS = 0.25, 50
# The melody's pYIN settings, as `ensemble.pyin.pyin` / `librosa.pyin` keywords (all but sr).
PYIN_OPTIONS = {
    "fmin": PYIN_FMIN,
    "fmax": PYIN_FMAX,
    "frame_length": PYIN_FRAME,
    "hop_length": PYIN_HOP,
    "resolution": PYIN_RESOLUTION,
    "n_thresholds": PYIN_THRESHOLDS,
}
RMS_WINDOW, RMS_HOP = 1024, 256  # 64 ms windows every 16 ms
SILENT_RMS = 1e-4  # -80 dBFS: windows quieter than this are silence, not dynamics
ENVELOPE_POINTS = 2000


@dataclass
class Melody:
    times_s: np.ndarray  # (F,)
    f0_hz: np.ndarray  # (F,) NaN where unvoiced
    voiced_share: float
    median_f0_hz: float | None
    complexity: float | None  # None when fewer than 2 voiced frames


@dataclass
class Dynamics:
    times_s: np.ndarray  # (W,)
    rms: np.ndarray  # (W,)
    average_energy: float
    mean_rms: float
    dynamic_range_db: float


@dataclass
class SongMetrics:
    """Everything the plots and metrics.json need for one signal."""

    duration_s: float
    peak: float
    waveform_times_s: np.ndarray
    waveform_min: np.ndarray
    waveform_max: np.ndarray
    melody: Melody | None
    dynamics: Dynamics
    extra: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, float | None]:
        """Scalar metrics, JSON-ready (the table in the app and metrics.json)."""
        melody = self.melody
        return {
            "duration_s": round(self.duration_s, 3),
            "peak": round(self.peak, 4),
            "average_energy": round(self.dynamics.average_energy, 6),
            "mean_rms": round(self.dynamics.mean_rms, 5),
            "dynamic_range_db": round(self.dynamics.dynamic_range_db, 2),
            "melodic_complexity": None
            if melody is None or melody.complexity is None
            else round(melody.complexity, 5),
            "voiced_share": None if melody is None else round(melody.voiced_share, 3),
            "median_f0_hz": None
            if melody is None or melody.median_f0_hz is None
            else round(melody.median_f0_hz, 2),
            **self.extra,
        }

    def series(self) -> dict[str, list[float | None]]:
        """Time series for JSON export (NaN becomes null)."""
        out: dict[str, list[float | None]] = {
            "waveform_times_s": self.waveform_times_s.round(4).tolist(),
            "waveform_min": self.waveform_min.round(4).tolist(),
            "waveform_max": self.waveform_max.round(4).tolist(),
            "rms_times_s": self.dynamics.times_s.round(4).tolist(),
            "rms": self.dynamics.rms.round(5).tolist(),
        }
        if self.melody is not None:
            out["melody_times_s"] = self.melody.times_s.round(4).tolist()
            out["melody_f0_hz"] = [
                None if np.isnan(v) else round(float(v), 2) for v in self.melody.f0_hz
            ]
        return out


def waveform_envelope(
    audio: np.ndarray, points: int = ENVELOPE_POINTS, sample_rate: int = SAMPLE_RATE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Min/max envelope of y(t) in ``points`` bins: (times_s, min, max), each (P,)."""
    n = len(audio)
    points = max(1, min(points, n))
    edges = np.linspace(0, n, points + 1).astype(int)
    lows = np.minimum.reduceat(audio, edges[:-1])
    highs = np.maximum.reduceat(audio, edges[:-1])
    return edges[:-1] / sample_rate, lows.astype(np.float32), highs.astype(np.float32)


def melodic_complexity(f0_hz: np.ndarray) -> float | None:
    """Normalised pitch variance Var(f0)/mean(f0)^2 over voiced (finite, > 0) frames."""
    voiced = f0_hz[np.isfinite(f0_hz) & (f0_hz > 0)]
    if len(voiced) < 2:
        return None
    return float(np.var(voiced) / np.mean(voiced) ** 2)


def melody(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Melody:
    """pYIN f0 trajectory (32 ms hop) with voicing share and melodic complexity."""
    from ensemble.pyin import pyin

    f0, voiced_flag, _ = pyin(np.asarray(audio, np.float32), sr=sample_rate, **PYIN_OPTIONS)
    f0 = np.where(voiced_flag, f0, np.nan)
    times = np.arange(len(f0)) * PYIN_HOP / sample_rate
    voiced = f0[np.isfinite(f0)]
    return Melody(
        times_s=times,
        f0_hz=f0,
        voiced_share=float(np.mean(np.isfinite(f0))) if len(f0) else 0.0,
        median_f0_hz=float(np.median(voiced)) if len(voiced) else None,
        complexity=melodic_complexity(f0),
    )


def dynamics(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Dynamics:
    """RMS envelope over 64 ms windows, average energy and dynamic range."""
    audio = np.asarray(audio, np.float64)
    padded = np.pad(audio, (RMS_WINDOW // 2, RMS_WINDOW // 2))
    if len(padded) < RMS_WINDOW:
        padded = np.pad(padded, (0, RMS_WINDOW - len(padded)))
    frames = np.lib.stride_tricks.sliding_window_view(padded, RMS_WINDOW)[::RMS_HOP]
    rms = np.sqrt(np.mean(frames**2, axis=1))
    loud = rms[rms > SILENT_RMS]
    if len(loud) >= 2:
        db = 20 * np.log10(loud)
        dyn_range = float(np.percentile(db, 95) - np.percentile(db, 5))
    else:
        dyn_range = 0.0
    return Dynamics(
        times_s=np.arange(len(rms)) * RMS_HOP / sample_rate,
        rms=rms.astype(np.float32),
        average_energy=float(np.mean(rms**2)),
        mean_rms=float(np.mean(rms)),
        dynamic_range_db=dyn_range,
    )


def song_metrics(
    audio: np.ndarray, *, pitched: bool = True, sample_rate: int = SAMPLE_RATE
) -> SongMetrics:
    """All metrics of one (N,) signal at ``sample_rate``; ``pitched=False`` skips the melody
    (drums). Melody and dynamics are measured at SAMPLE_RATE (a hi-fi signal is resampled for
    them, so their frames and figures do not depend on the output rate)."""
    from ensemble.audio import resample

    audio = np.asarray(audio, np.float32)
    times, lows, highs = waveform_envelope(audio, sample_rate=sample_rate)
    analysed = resample(audio, sample_rate, SAMPLE_RATE)
    return SongMetrics(
        duration_s=len(audio) / sample_rate,
        peak=float(np.max(np.abs(audio))) if len(audio) else 0.0,
        waveform_times_s=times,
        waveform_min=lows,
        waveform_max=highs,
        melody=melody(analysed) if pitched and np.any(analysed) else None,
        dynamics=dynamics(analysed),
    )


def metrics_json(named: dict[str, SongMetrics], *, series: bool = False) -> dict[str, object]:
    """{name: summary (+ series)} for metrics.json."""
    out: dict[str, object] = {}
    for name, metrics in named.items():
        entry: dict[str, object] = {"summary": metrics.summary()}
        if series:
            entry["series"] = metrics.series()
        out[name] = entry
    return out
