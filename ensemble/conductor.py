"""The conductor: a Transformer arranger that hears a leader and plays the followers.

Input is the leader's frame features at FRAME_RATE (pitch, voicing, loudness, onset strength,
chroma). A stride-4 convolution turns them into 25 Hz tokens, so a 12.8 s window is 320 tokens,
and a bidirectional Transformer encoder reads the whole window: the conductor renders whole clips
(the app and `perform` always have the full seed), so a follower may look ahead to the next chord
instead of reacting late, which a causal model would have to do.

Each follower is a query: its instrument embedding is added to the encoded tokens and a few more
Transformer layers (shared weights, batched over followers) turn them into that instrument's part.
Followers never attend to each other, so any subset of the vocabulary can be chosen at run time and
each part is the same whichever others are playing. Per 100 Hz frame the model predicts loudness
(dB), a distribution over 128 MIDI notes plus a voicing logit (pitched instruments), and an onset
logit (drums). `ensemble.accompaniment` decodes these into parts: frame by frame with a Viterbi
pass that charges for note changes, so followers play notes rather than per-frame jitter, or on
the leader's beat grid, key and chords.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ensemble import checkpoint
from ensemble.accompaniment import (
    N_PITCHES,
    QUIET_DB,
    Accompaniment,
    FollowerPart,
    frame_parts,
    groove_parts,
    harmonic_context,
    rest_part,
)
from ensemble.config import FRAME_RATE
from ensemble.errors import CheckpointError, EnsembleError
from ensemble.features import FeatureFrame, hz_to_midi
from ensemble.limits import CONDUCTOR_LIMITS, check_all
from ensemble.notes import NoteEvent
from ensemble.rhythm import BeatGrid, leader_notes
from ensemble.threads import one_torch_thread

STRIDE = 4  # 100 Hz frames -> 25 Hz tokens
REL_FLOOR_DB = -60.0  # leader loudness more than 60 dB under its reference level counts as silence
SILENT_LEADER_DB = -70.0  # a leader never louder than this is silence (cf. config.SILENCE_DBFS)
MIN_LEADER_FRAMES = 8  # 80 ms: shorter input has no musical content to follow
MIN_VOICED_FRAMES = 5  # fewer confidently pitched frames than this: nothing to harmonise
WINDOW_BATCH = 2  # windows per network call when predicting (see `predict`)
N_INPUTS = 29  # channels made by `leader_inputs`
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "conductor"
FORMAT = "ensemble-conductor"


class ConductorWarning(UserWarning):
    """A leader the conductor cannot follow (silent, unvoiced, too short): the followers rest."""


@dataclass
class ModelConfig:
    """Architecture and window of the conductor network (stored in config.json)."""

    d_model: int = 192
    n_heads: int = 4
    encoder_layers: int = 4
    follower_layers: int = 2
    ff_mult: int = 4
    frame_dim: int = 128  # width of the per-frame (100 Hz) output head
    # Rendered corpora are small (the 40-piece render has 32 training tracks): with dropout 0.1
    # the model memorised them within ~1k steps; 0.3 (+ weight decay 0.05) validated best of
    # the variants tried, ahead of a smaller 0.7 M-parameter model.
    dropout: float = 0.3
    window_frames: int = 1280  # 12.8 s per window, 320 tokens
    overlap_frames: int = 256  # long inputs: windows overlap by 2.56 s and are cross-faded


@dataclass
class Normalisation:
    """Statistics of the training data that centre inputs and outputs (stored in config.json)."""

    pitch_mean: float = 64.0  # leader voiced MIDI pitch
    pitch_std: float = 12.0
    ref_db_mean: float = -25.0  # leader reference level (95th percentile loudness of a track)
    ref_db_std: float = 8.0
    loudness_mean_db: float = -45.0  # follower loudness, floored at QUIET_DB
    loudness_std_db: float = 20.0


@dataclass
class InstrumentInfo:
    """One vocabulary entry: name, kind, and its training-data statistics (for baselines)."""

    name: str
    is_drum: bool
    loudness_mean_db: float  # mean follower loudness (floored at QUIET_DB)
    pitch_midi_mean: float  # mean MIDI pitch on voiced frames (0 for drums)


@dataclass
class ConductorConfig:
    """Everything besides the weights: architecture, data statistics, instrument vocabulary."""

    model: ModelConfig = field(default_factory=ModelConfig)
    norm: Normalisation = field(default_factory=Normalisation)
    instruments: list[InstrumentInfo] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"format": FORMAT, "version": 1, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict) -> ConductorConfig:
        if data.get("format") != FORMAT:
            raise ValueError(f"format is {data.get('format')!r}, expected {FORMAT!r}")
        return cls(
            model=ModelConfig(**data["model"]),
            norm=Normalisation(**data["norm"]),
            instruments=[InstrumentInfo(**item) for item in data["instruments"]],
        )

    def instrument_index(self) -> dict[str, int]:
        return {info.name: i for i, info in enumerate(self.instruments)}


def _check_config(config: ConductorConfig, path: Path) -> None:
    """Sizes in range (they allocate the network) and finite statistics, before any tensor."""
    check_all(asdict(config.model), CONDUCTOR_LIMITS, str(path), CheckpointError)
    numbers = [*asdict(config.norm).values()]
    numbers += [v for info in config.instruments for v in asdict(info).values()
                if isinstance(v, float)]  # fmt: skip
    if not all(math.isfinite(float(v)) for v in numbers):
        raise CheckpointError(
            f"{path} holds NaN or infinite statistics; retrain the conductor or re-download it."
        )


# --- features ---------------------------------------------------------------------------------


def reference_level(loudness_db: np.ndarray) -> float:
    """A clip's reference level: the 95th percentile of its loudness (dB), robust to rests."""
    return float(np.percentile(loudness_db, 95)) if len(loudness_db) else QUIET_DB


def onset_strength(loudness_db: torch.Tensor) -> torch.Tensor:
    """(..., T) rise of loudness over the previous 30 ms in dB, 0 where it falls."""
    first = loudness_db[..., :1].expand(*loudness_db.shape[:-1], 3)
    previous = torch.cat([first, loudness_db[..., :-3]], dim=-1)
    return torch.relu(loudness_db - previous)


def detect_onsets(loudness_db: np.ndarray, threshold_db: float = 6.0) -> np.ndarray:
    """Frame indices of attacks in a loudness curve: 30 ms rises of >= threshold_db that are local
    maxima within +-30 ms, at least 50 ms apart, and audible (> QUIET_DB + 20 dB).

    Used for the drum targets, for shaping predicted drum envelopes and for the onset metric, so
    all three agree on what an onset is.
    """
    loud = np.maximum(np.asarray(loudness_db, np.float32), QUIET_DB)
    rise = onset_strength(torch.from_numpy(loud)).numpy()
    padded = np.pad(rise, 3)
    local_max = rise >= np.lib.stride_tricks.sliding_window_view(padded, 7).max(axis=1)
    candidates = np.flatnonzero(local_max & (rise >= threshold_db) & (loud > QUIET_DB + 20.0))
    onsets: list[int] = []
    for frame in candidates:
        if not onsets or frame - onsets[-1] >= 5:
            onsets.append(int(frame))
    return np.asarray(onsets, dtype=np.int64)


def leader_inputs(
    midi: torch.Tensor,
    confidence: torch.Tensor,
    loudness_db: torch.Tensor,
    chroma: torch.Tensor,
    ref_db: torch.Tensor,
    norm: Normalisation,
) -> torch.Tensor:
    """Model input channels from raw leader features.

    Args:
        midi: (B, T) tracked pitch as fractional MIDI (any value where unvoiced).
        confidence: (B, T) voicing confidence in [0, 1].
        loudness_db: (B, T) A-weighted loudness.
        chroma: (B, 12, T) pitch-class energy.
        ref_db: (B,) reference level of each clip (see `reference_level`).

    Returns:
        (B, N_INPUTS, T): confidence, centred pitch, soft pitch class (12), relative loudness,
        onset strength, reference level, chroma (12). Pitch channels are weighted by confidence so
        unvoiced frames carry no pitch.
    """
    conf = confidence.clamp(0.0, 1.0)
    pitch = (midi - norm.pitch_mean) / norm.pitch_std * conf
    # Triangular soft one-hot on the pitch-class circle: keeps intonation between semitones.
    classes = torch.arange(12, device=midi.device, dtype=midi.dtype)
    dist = (midi.unsqueeze(1) % 12.0 - classes[None, :, None]).abs()
    dist = torch.minimum(dist, 12.0 - dist)
    pitch_class = torch.relu(1.0 - dist) * conf.unsqueeze(1)
    rel = (loudness_db - ref_db[:, None]).clamp(REL_FLOOR_DB, 10.0)
    ref = ((ref_db - norm.ref_db_mean) / norm.ref_db_std)[:, None].expand_as(rel)
    channels = [conf, pitch, rel / 20.0 + 1.0, onset_strength(rel) / 10.0, ref]
    return torch.cat(
        [torch.stack(channels[:2], 1), pitch_class, torch.stack(channels[2:], 1), chroma], dim=1
    )


# --- network ----------------------------------------------------------------------------------


def _sinusoids(n: int, dim: int, device: torch.device) -> torch.Tensor:
    """(n, dim) sinusoidal position codes (any length, so short inputs need no padding)."""
    position = torch.arange(n, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device) * (-math.log(10_000.0) / dim))
    codes = torch.zeros(n, dim, device=device)
    codes[:, 0::2] = torch.sin(position * freq)
    codes[:, 1::2] = torch.cos(position * freq)
    return codes


def _transformer(cfg: ModelConfig, n_layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        cfg.d_model,
        cfg.n_heads,
        cfg.ff_mult * cfg.d_model,
        cfg.dropout,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )
    # Pre-norm layers need a final norm; nested tensors only pay off with padding masks.
    return nn.TransformerEncoder(
        layer, n_layers, norm=nn.LayerNorm(cfg.d_model), enable_nested_tensor=False
    )


class ConductorNet(nn.Module):
    """Leader features -> per-follower loudness, pitch, voicing and onset logits at 100 Hz."""

    N_OUT = 1 + N_PITCHES + 2  # loudness, pitch logits, voicing logit, onset logit

    def __init__(self, cfg: ModelConfig, n_instruments: int) -> None:
        super().__init__()
        self.cfg = cfg
        d, h = cfg.d_model, cfg.frame_dim
        self.down = nn.Conv1d(
            N_INPUTS, d, kernel_size=2 * STRIDE, stride=STRIDE, padding=STRIDE // 2
        )
        self.encoder = _transformer(cfg, cfg.encoder_layers)
        self.instrument = nn.Embedding(n_instruments, d)
        self.follower = _transformer(cfg, cfg.follower_layers)
        # Upsampling: each token emits STRIDE sub-frame vectors; a 100 Hz skip path from the input
        # keeps onsets frame-accurate, which 40 ms tokens alone would blur.
        self.up = nn.Linear(d, STRIDE * h)
        self.skip = nn.Conv1d(N_INPUTS, h, kernel_size=5, padding=2)
        self.instrument_frame = nn.Embedding(n_instruments, h)
        self.head = nn.Sequential(nn.GELU(), nn.Linear(h, h), nn.GELU(), nn.Linear(h, self.N_OUT))

    def forward(self, x: torch.Tensor, instruments: torch.Tensor) -> torch.Tensor:
        """Predict every follower's frames.

        Args:
            x: (B, N_INPUTS, T) leader inputs, T a multiple of STRIDE.
            instruments: (B, F) follower instrument ids.

        Returns:
            (B, F, T, N_OUT) raw outputs: [..., 0] normalised loudness, [..., 1:129] pitch logits,
            [..., 129] voicing logit, [..., 130] onset logit.
        """
        b, _, t = x.shape
        f = instruments.shape[1]
        tokens = self.down(x).transpose(1, 2)  # (B, N, d)
        n = tokens.shape[1]
        tokens = self.encoder(tokens + _sinusoids(n, self.cfg.d_model, x.device))
        queries = tokens[:, None] + self.instrument(instruments)[:, :, None]  # (B, F, N, d)
        parts = self.follower(queries.reshape(b * f, n, -1))
        frames = self.up(parts).reshape(b, f, n * STRIDE, -1)[:, :, :t]  # (B, F, T, h)
        skip = self.skip(x).transpose(1, 2)[:, None]  # (B, 1, T, h)
        frames = frames + skip + self.instrument_frame(instruments)[:, :, None]
        return self.head(frames)


# --- public API -------------------------------------------------------------------------------


class Conductor:
    """A trained conductor: `conduct(leader, followers)` returns a part per follower."""

    def __init__(self, config: ConductorConfig, model: ConductorNet) -> None:
        self.config = config
        self.model = model.eval()
        self._index = config.instrument_index()

    @property
    def instruments(self) -> list[str]:
        """Names of the follower instruments this conductor can play."""
        return [info.name for info in self.config.instruments]

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None) -> Conductor:
        """Load `model.safetensors` + `config.json` from a folder (default checkpoints/conductor).

        Raises CheckpointError when the files are missing, unreadable or do not match each other.
        """
        folder = Path(path) if path is not None else DEFAULT_CHECKPOINT
        if folder.is_file():
            folder = folder.parent
        weights, config_path = folder / checkpoint.WEIGHTS_FILE, folder / checkpoint.CONFIG_FILE
        for needed in (weights, config_path):
            if not needed.is_file():
                raise CheckpointError(
                    f"No conductor checkpoint at {folder} ({needed.name} is missing); train one "
                    f"with `python -m ensemble train conductor --data DIR --out {folder}`."
                )
        retrain = "Retrain the conductor or re-download it."
        data = checkpoint.read_config(config_path, "conductor", retrain)
        try:
            config = ConductorConfig.from_json(data)
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(
                f"{config_path} is not a valid conductor config ({exc}). {retrain}"
            ) from exc
        _check_config(config, config_path)
        with one_torch_thread():  # many tiny copies, which a second OpenMP thread only slows
            model = ConductorNet(config.model, max(len(config.instruments), 1))
            model.load_state_dict(
                checkpoint.read_weights(weights, model.state_dict(), "conductor", retrain)
            )
        return cls(config, model)

    def save(self, folder: str | Path) -> Path:
        """Write ``model.safetensors`` (fp32) and ``config.json`` into ``folder``, atomically."""
        state = self.model.state_dict()
        return checkpoint.save(folder, self.config.to_json(), state, 1, dtype=torch.float32)

    def conduct(
        self,
        leader: FeatureFrame,
        followers: list[str],
        *,
        messages: list[str] | None = None,
    ) -> dict[str, FollowerPart]:
        """Play each follower against the leader.

        Args:
            leader: the leader's features (T frames).
            followers: instrument names from `self.instruments`, chosen freely per call.
            messages: if given, notes for the user (e.g. "the leader is silent") are appended here;
                otherwise they are issued as ConductorWarning.

        Returns:
            {name: FollowerPart} with (T,) arrays. A silent, unvoiced or very short leader gives
            rests for every follower and a message, never an exception.
        """
        ids = self._resolve(followers)
        n = leader.n_frames
        if not ids:
            return {}
        problem = unusable_leader(leader)
        if problem is not None:
            _tell(f"{problem}; the followers rest.", messages)
            return {name: rest_part(n) for name in ids}
        with one_torch_thread():
            out = predict(self.model, self.config, leader, list(ids.values()))
        return frame_parts(out, list(ids), [self._is_drum(name) for name in ids])

    def accompany(
        self,
        leader: FeatureFrame,
        followers: dict[str, str],
        registers: dict[str, float],
        grid: BeatGrid,
        *,
        notes: list[NoteEvent] | None = None,
        messages: list[str] | None = None,
    ) -> Accompaniment:
        """Play each follower against the leader on its beat grid, in its key, with chords
        (see `ensemble.groove`).

        Args:
            leader: the leader's features (T frames).
            followers: {instrument name: role} ("bass", "harmony" or "drums"; see
                `ensemble.mix.assign_roles`).
            registers: {instrument name: mean MIDI pitch of its decoder} for pitched ones. A
                pitched instrument outside the vocabulary plays the part of the vocabulary
                instrument closest in register, moved by octaves to its own.
            grid: the leader's beats and meter (`ensemble.rhythm.track_beats`).
            notes: the leader's notes if already segmented (`ensemble.rhythm.leader_notes`).
            messages: as in `conduct`.

        Returns:
            An Accompaniment; an unusable leader gives rests and a message, never an exception.
        """
        stand_ins = {name: self.stand_in(name, registers.get(name)) for name in followers}
        n = leader.n_frames
        problem = unusable_leader(leader) if stand_ins else None
        if problem is not None:
            _tell(f"{problem}; the followers rest.", messages)
            return Accompaniment({name: rest_part(n) for name in stand_ins}, None, stand_ins)
        if not stand_ins:
            return Accompaniment({}, None, stand_ins)
        with one_torch_thread():
            out = predict(self.model, self.config, leader,
                          [self._index[v] for v in stand_ins.values()])
        drums = [self._is_drum(v) for v in stand_ins.values()]
        notes = leader_notes(leader) if notes is None else notes
        context = harmonic_context(leader, grid, out, drums, notes)
        parts = groove_parts(out, followers, stand_ins, drums, registers, context)
        return Accompaniment(parts, context, stand_ins)

    def stand_in(self, name: str, pitch_midi_mean: float | None = None) -> str:
        """The vocabulary instrument that plays ``name``'s part: itself when known; for a pitched
        instrument it does not know, the pitched one closest in mean pitch."""
        key = name.strip().lower()
        if key in self._index:
            return key
        pitched = [i for i in self.config.instruments if not i.is_drum]
        if pitch_midi_mean is None or not pitched:
            raise EnsembleError(
                f"The conductor cannot play {name!r}; it knows: {', '.join(self.instruments)}."
            )
        return min(pitched, key=lambda i: abs(i.pitch_midi_mean - pitch_midi_mean)).name

    def _is_drum(self, name: str) -> bool:
        return self.config.instruments[self._index[name]].is_drum

    def _resolve(self, followers: list[str]) -> dict[str, int]:
        ids: dict[str, int] = {}
        for name in followers:
            key = name.strip().lower()
            if key not in self._index:
                raise EnsembleError(
                    f"The conductor cannot play {name!r}; it knows: {', '.join(self.instruments)}."
                )
            ids[key] = self._index[key]
        return ids


def unusable_leader(leader: FeatureFrame) -> str | None:
    """Why a leader cannot be followed (too short, silent, unvoiced), or None."""
    n = leader.n_frames
    if n < MIN_LEADER_FRAMES:
        return (
            f"The leader is too short to follow ({n} frames, {n * 1000 // FRAME_RATE} ms; "
            f"at least {MIN_LEADER_FRAMES * 1000 // FRAME_RATE} ms is needed)"
        )
    if float(np.max(leader.loudness_db)) < SILENT_LEADER_DB:
        return "The leader is silent"
    if int(leader.voiced.sum()) < MIN_VOICED_FRAMES:
        return "No pitch was found in the leader (it is unvoiced or noise-like)"
    return None


def _tell(note: str, messages: list[str] | None) -> None:
    if messages is None:
        warnings.warn(note, ConductorWarning, stacklevel=3)
    else:
        messages.append(note)


def _cross_fade(win: int, edge: int) -> torch.Tensor:
    """(win,) triangular cross-fade weights over ``edge`` frames at both ends of a window, so
    window edges (little context) count least; all ones without an edge."""
    ramp = torch.ones(win)
    if edge > 0:
        fade = (torch.arange(edge, dtype=torch.float32) + 0.5) / edge
        ramp[:edge], ramp[-edge:] = fade, fade.flip(0)
    return ramp


@torch.inference_mode()
def predict(model: ConductorNet, config: ConductorConfig, leader: FeatureFrame, ids: list[int]
            ) -> dict[str, np.ndarray]:
    """Run the network over overlapping windows and cross-fade them.

    Returns {"loud": (F, T) dB, "pitch": (F, T, 128) probs, "voiced": (F, T), "onset": (F, T)}.
    """
    cfg, norm = config.model, config.norm
    n = leader.n_frames
    ref = reference_level(leader.loudness_db)
    x = leader_inputs(
        torch.from_numpy(hz_to_midi(leader.f0_hz).astype(np.float32))[None],
        torch.from_numpy(np.asarray(leader.confidence, np.float32))[None],
        torch.from_numpy(np.asarray(leader.loudness_db, np.float32))[None],
        torch.from_numpy(np.asarray(leader.chroma, np.float32))[None],
        torch.tensor([ref], dtype=torch.float32),
        norm,
    )[0]  # (C, T)
    win = min(cfg.window_frames, -(-n // STRIDE) * STRIDE)
    if n < win:  # pad a short clip to whole tokens with silence-like inputs
        x = torch.nn.functional.pad(x, (0, win - n))
    hop = cfg.window_frames - cfg.overlap_frames
    starts = list(range(0, max(n - win, 0) + 1, hop))
    if starts[-1] + win < n:
        starts.append(n - win)
    ramp = _cross_fade(win, min(cfg.overlap_frames, win // 2) if len(starts) > 1 else 0)
    total = max(n, win)
    acc = torch.zeros(len(ids), total, 3 + N_PITCHES)
    weight = torch.zeros(total)
    # A few windows per call: all of a 2-minute input's at once hold ~200 MB of attention.
    for first in range(0, len(starts), WINDOW_BATCH):
        group = starts[first : first + WINDOW_BATCH]
        batch = torch.stack([x[:, s : s + win] for s in group])
        raw = model(batch, torch.tensor([ids] * len(group)))  # (W, F, win, N_OUT)
        for w, s in enumerate(group):
            values = torch.cat(
                [
                    raw[w, :, :, :1],
                    torch.sigmoid(raw[w, :, :, 129:131]),
                    torch.softmax(raw[w, :, :, 1:129], dim=-1),
                ],
                dim=-1,
            )
            acc[:, s : s + win] += values * ramp[None, :, None]
            weight[s : s + win] += ramp
    acc = acc.div_(weight[None, :, None])[:, :n]
    return {
        "loud": (acc[..., 0] * norm.loudness_std_db + norm.loudness_mean_db).numpy(),
        "voiced": acc[..., 1].numpy(),
        "onset": acc[..., 2].numpy(),
        "pitch": acc[..., 3:].numpy(),
    }
