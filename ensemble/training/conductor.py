"""`python -m ensemble train conductor`: teach the conductor to play followers from a leader.

Data: the multitrack feature cache (`ensemble.data.cache`). The leader is each track's melody stem,
seen through the pitch tracker (its cached tracked f0, confidence, loudness, chroma: what inference
sees); every other stem is a follower whose targets are its exact MIDI notes, voicing and loudness.

All frame arrays of the corpus live on the training device and windows are cut by index
arithmetic, so a step is a few kernel launches with no data-loader: on a GPU the model, not the
input pipeline, sets the pace (an H100 runs ~30 steps/s of 32 windows). Each step draws random
12.8 s windows, up to `max_followers` of the track's followers, and augments leader and followers
alike: a transposition (harmony in every key), a tempo change (rhythm at every speed) and a gain
(follower levels move with the leader's). Rendered corpora are small, so the checkpoint kept is
the one with the best validation score (see `evaluate`), not the last.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ensemble.conductor import (
    N_PITCHES,
    QUIET_DB,
    Conductor,
    ConductorConfig,
    ConductorNet,
    InstrumentInfo,
    ModelConfig,
    Normalisation,
    detect_onsets,
    leader_inputs,
    reference_level,
)
from ensemble.errors import DataError, EnsembleError
from ensemble.features import FeatureFrame, hz_to_midi

log = logging.getLogger(__name__)



@dataclass
class FollowerStem:
    """Targets of one follower stem (T frames, the leader's grid)."""

    instrument: str
    is_drum: bool
    midi: np.ndarray  # (T,) float MIDI pitch from the score, 0 where silent
    loudness_db: np.ndarray  # (T,)


@dataclass
class ConductorTrack:
    """One multitrack piece as the conductor sees it."""

    name: str
    leader: FeatureFrame  # tracked features of the melody stem
    followers: list[FollowerStem]


@dataclass
class TrainSettings:
    """Optimisation settings (the model's are in ModelConfig)."""

    steps: int = 5000
    batch_size: int = 32
    max_followers: int = 6
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 200
    max_transpose: int = 6  # semitones, uniform in [-max_transpose, max_transpose]
    max_stretch: float = 1.25  # tempo factor, log-uniform in [1 / max_stretch, max_stretch]
    max_gain_db: float = 6.0  # ensemble gain, uniform in [-max_gain_db, max_gain_db]
    label_smoothing: float = 0.1  # on the note and pitch-class targets
    val_every: int = 250
    log_every: int = 50
    seed: int = 0
    max_minutes: float | None = None  # wall-clock budget: validate, save and stop when spent


# --- data -------------------------------------------------------------------------------------


def tracks_from_cache(root: Path, split: str) -> list[ConductorTrack]:
    """The cached tracks of a split that have a leader and at least one follower.

    The cache stores ground-truth f0 in Hz under ``f0_truth``; followers get it as MIDI numbers.
    Audio is dropped as soon as a track is read: the conductor needs frame features only.
    """
    from ensemble.data.cache import iter_cached_tracks

    tracks = []
    for track in iter_cached_tracks(root, split):
        stems = list(track.stems.values())
        lead = next((s for s in stems if s["role"] == "leader"), None)
        if lead is None or len(stems) < 2:
            log.warning("track %s has no leader or no follower; skipped", track.track)
            continue
        n = len(lead["f0_tracked"])
        leader = FeatureFrame(
            f0_hz=lead["f0_tracked"],
            confidence=lead["confidence"],
            loudness_db=lead["loudness_db"][:n],
            rms=lead["rms"],
            chroma=lead["chroma"],
        )
        followers = [
            FollowerStem(
                instrument=s["instrument"],
                is_drum=bool(s["is_drum"]),
                midi=_fit(hz_to_midi(s["f0_truth"]), n, 0.0),
                loudness_db=_fit(s["loudness_db"], n, QUIET_DB),
            )
            for s in stems
            if s is not lead
        ]
        tracks.append(ConductorTrack(track.track, leader, followers))
    return tracks


def _fit(values: np.ndarray, n: int, fill: float) -> np.ndarray:
    """(n,) float32: cut or pad a follower array to the leader's frame count."""
    values = np.asarray(values[:n], np.float32)
    return np.pad(values, (0, n - len(values)), constant_values=fill)


def fit_config(tracks: list[ConductorTrack], model: ModelConfig) -> ConductorConfig:
    """Vocabulary (every follower instrument of the training tracks) and normalisation stats."""
    pitches, refs, louds = [], [], []
    per_inst: dict[str, dict[str, list]] = {}
    for track in tracks:
        lead = track.leader
        pitches.append(hz_to_midi(lead.f0_hz[lead.voiced & (lead.f0_hz > 0)]))
        refs.append(reference_level(lead.loudness_db))
        for stem in track.followers:
            loud = np.maximum(stem.loudness_db, QUIET_DB)
            louds.append(loud)
            entry = per_inst.setdefault(stem.instrument, {"drum": [], "loud": [], "midi": []})
            entry["drum"].append(stem.is_drum)
            entry["loud"].append(loud)
            entry["midi"].append(stem.midi[stem.midi > 0])
    if not per_inst:
        raise DataError("The training split has no follower stems, so there is nothing to learn.")
    pitch, loud, ref = np.concatenate(pitches), np.concatenate(louds), np.array(refs)
    norm = Normalisation(
        pitch_mean=float(pitch.mean()) if len(pitch) else 64.0,
        pitch_std=float(max(pitch.std(), 1.0)) if len(pitch) else 12.0,
        ref_db_mean=float(ref.mean()),
        ref_db_std=float(max(ref.std(), 1.0)),
        loudness_mean_db=float(loud.mean()),
        loudness_std_db=float(max(loud.std(), 1.0)),
    )
    instruments = []
    for name in sorted(per_inst):
        entry = per_inst[name]
        midi = np.concatenate(entry["midi"])
        instruments.append(
            InstrumentInfo(
                name=name,
                is_drum=bool(np.mean(entry["drum"]) >= 0.5),
                loudness_mean_db=float(np.concatenate(entry["loud"]).mean()),
                pitch_midi_mean=float(midi.mean()) if len(midi) else 0.0,
            )
        )
    return ConductorConfig(model=model, norm=norm, instruments=instruments)


def onset_targets(loudness_db: np.ndarray) -> np.ndarray:
    """(T,) soft onset labels: 1 at detected attacks, 0.5 one frame either side."""
    target = np.zeros(len(loudness_db), np.float32)
    for frame in detect_onsets(loudness_db):
        target[max(frame - 1, 0) : frame + 2] = np.maximum(
            target[max(frame - 1, 0) : frame + 2], 0.5
        )
        target[frame] = 1.0
    return target


def _leader_arrays(leader: FeatureFrame, size: int) -> dict[str, np.ndarray]:
    """The leader's frame arrays, padded with silence to ``size`` frames."""
    pad = size - leader.n_frames
    return {
        "midi": np.pad(hz_to_midi(leader.f0_hz), (0, pad)),
        "conf": np.pad(leader.confidence, (0, pad)),
        "loud": np.pad(leader.loudness_db, (0, pad), constant_values=QUIET_DB),
        "chroma": np.pad(leader.chroma, ((0, 0), (0, pad))),
        "ref": np.full(size, reference_level(leader.loudness_db)),
    }


def _follower_arrays(stem: FollowerStem, n: int, size: int) -> dict[str, np.ndarray]:
    """A follower's targets over the leader's ``n`` frames, padded to ``size``: MIDI note (-1
    where none, and for drums), loudness, drum onsets and the valid-frame mask."""
    pad = size - n
    m = np.round(stem.midi[:n]).astype(np.int64)
    midi = np.where((m > 0) & (m < N_PITCHES) & (not stem.is_drum), m, -1)
    loud = np.maximum(stem.loudness_db[:n], QUIET_DB)
    onsets = onset_targets(loud) if stem.is_drum else np.zeros(n, np.float32)
    return {
        "midi": np.pad(midi, (0, pad), constant_values=-1),
        "loud": np.pad(loud, (0, pad), constant_values=QUIET_DB),
        "onset": np.pad(onsets, (0, pad)),
        "valid": np.arange(size) < n,
    }


class WindowSampler:
    """The corpus as flat device tensors; cuts batches of windows with all their followers.

    Tracks are concatenated along time (each padded with silence to at least one window), so a
    window is `offset + start + arange(window)` into every buffer.
    """

    def __init__(
        self,
        tracks: list[ConductorTrack],
        config: ConductorConfig,
        device: torch.device,
    ) -> None:
        self.config, self.device = config, device
        self.window = config.model.window_frames
        index = config.instrument_index()
        lead: dict[str, list[np.ndarray]] = {k: [] for k in ("midi", "conf", "loud", "chroma",
                                                             "ref")}  # fmt: skip
        fol: dict[str, list[np.ndarray]] = {k: [] for k in ("midi", "loud", "onset", "valid")}
        offsets, lengths, fol_rows, fol_inst = [], [], [], []
        lead_pos = fol_pos = 0
        for track in tracks:
            stems = [s for s in track.followers if s.instrument in index]
            if not stems:
                continue
            size = max(track.leader.n_frames, self.window)
            for key, values in _leader_arrays(track.leader, size).items():
                lead[key].append(values)
            for stem in stems:
                for key, values in _follower_arrays(stem, track.leader.n_frames, size).items():
                    fol[key].append(values)
            fol_rows.append([fol_pos + k * size for k in range(len(stems))])
            fol_inst.append([index[stem.instrument] for stem in stems])
            fol_pos += len(stems) * size
            offsets.append(lead_pos)
            lengths.append(size)
            lead_pos += size
        if not offsets:
            raise DataError("No track has a follower this conductor knows; check the data split.")
        width = max(len(r) for r in fol_rows)

        def tensor(parts: list[np.ndarray], dtype: torch.dtype, axis: int = 0) -> torch.Tensor:
            return torch.from_numpy(np.concatenate(parts, axis=axis)).to(device, dtype)

        self.lead_midi = tensor(lead["midi"], torch.float32)
        self.lead_conf = tensor(lead["conf"], torch.float32)
        self.lead_loud = tensor(lead["loud"], torch.float32)
        self.lead_chroma = tensor(lead["chroma"], torch.float32, axis=1)
        self.lead_ref = tensor(lead["ref"], torch.float32)
        self.fol_midi = tensor(fol["midi"], torch.int64)
        self.fol_loud = tensor(fol["loud"], torch.float32)
        self.fol_onset = tensor(fol["onset"], torch.float32)
        self.fol_valid = tensor(fol["valid"], torch.bool)
        self.offsets = torch.tensor(offsets, device=device)
        self.lengths = torch.tensor(lengths)
        self.rows = torch.tensor([r + [-1] * (width - len(r)) for r in fol_rows], device=device)
        self.inst = torch.tensor([r + [0] * (width - len(r)) for r in fol_inst], device=device)
        drums = [info.is_drum for info in config.instruments]
        self.is_drum = torch.tensor(drums, device=device)
        self.n_tracks = len(offsets)

    def random_batch(
        self, settings: TrainSettings, gen: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """A training batch: windows drawn in proportion to track length, random followers,
        random transposition, tempo and gain."""
        b = settings.batch_size
        log_stretch = math.log(settings.max_stretch)
        rate = torch.exp((torch.rand(b, generator=gen) * 2.0 - 1.0) * log_stretch)
        spans = (self.lengths - self.window + 1).float()
        tracks = torch.multinomial(spans, b, replacement=True, generator=gen)
        # A window read at `rate` spans rate * window source frames; keep it inside the track.
        room = (self.lengths[tracks] - (rate * self.window).ceil()).clamp(min=0.0) + 1.0
        starts = (torch.rand(b, generator=gen) * room).long()
        keys = torch.rand(b, self.rows.shape[1], generator=gen).to(self.device)
        keys = keys.masked_fill(self.rows[tracks.to(self.device)] < 0, 2.0)
        cols = keys.argsort(dim=1)[:, : settings.max_followers]
        shift = torch.randint(
            -settings.max_transpose, settings.max_transpose + 1, (b,), generator=gen
        )
        gain = (torch.rand(b, generator=gen) * 2.0 - 1.0) * settings.max_gain_db
        return self.batch(tracks, starts, cols, shift=shift, rate=rate, gain=gain)

    def batch(
        self,
        tracks: torch.Tensor,
        starts: torch.Tensor,
        cols: torch.Tensor | None = None,
        *,
        shift: torch.Tensor | None = None,
        rate: torch.Tensor | None = None,
        gain: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Windows `starts` (B,) of `tracks` (B,) with follower columns `cols` (B, F) (default:
        all). Optional augmentation, the same for leader and followers: transposition by `shift`
        (B,) semitones, tempo change by reading frames at `rate` (B,) (nearest frame), and a gain
        of `gain` (B,) dB on the whole ensemble.

        Returns x (B, N_INPUTS, L), inst (B, F), midi (B, F, L) int (-1 unvoiced), loud (B, F, L)
        dB, onset (B, F, L), mask (B, F, L) bool, drum (B, F) bool.
        """
        dev = self.device
        tracks, starts = tracks.to(dev), starts.to(dev)
        b = len(tracks)
        if cols is None:
            cols = torch.arange(self.rows.shape[1], device=dev).expand(b, -1)
        shift = torch.zeros(b, device=dev) if shift is None else shift.to(dev).float()
        gain = torch.zeros(b, device=dev) if gain is None else gain.to(dev).float()
        span = torch.arange(self.window, device=dev, dtype=torch.float32)
        if rate is not None:
            span = span[None] * rate.to(dev)[:, None]
        last = (self.lengths.to(dev)[tracks] - 1)[:, None]
        pos = torch.minimum(starts[:, None] + span.long().expand(b, -1), last)  # (B, L)
        x = self._leader_window(self.offsets[tracks][:, None] + pos, shift, gain)
        rows = self.rows[tracks[:, None], cols]  # (B, F)
        present = rows >= 0
        fidx = rows.clamp(min=0)[:, :, None] + pos[:, None, :]  # (B, F, L)
        target = self.fol_midi[fidx]
        voiced = target >= 0
        target = torch.where(voiced, (target + shift[:, None, None].long()).clamp(0, 127), -1)
        loud = self.fol_loud[fidx]
        # Silence stays at the floor; audible frames move with the gain.
        loud = torch.where(loud > QUIET_DB, (loud + gain[:, None, None]).clamp(min=QUIET_DB), loud)
        inst = self.inst[tracks[:, None], cols]
        return {
            "x": x,
            "inst": inst,
            "midi": target,
            "loud": loud,
            "onset": self.fol_onset[fidx],
            "mask": self.fol_valid[fidx] & present[:, :, None],
            "drum": self.is_drum[inst],
        }

    def _leader_window(
        self, frames: torch.Tensor, shift: torch.Tensor, gain: torch.Tensor
    ) -> torch.Tensor:
        """(B, N_INPUTS, L) network inputs of the leader at ``frames`` (B, L), transposed by
        ``shift`` (B,) semitones (chroma rolled with it) and ``gain`` (B,) dB louder."""
        midi = self.lead_midi[frames] + shift[:, None]
        pcs = (torch.arange(12, device=self.device)[None] - shift[:, None].long()) % 12
        chroma = self.lead_chroma[:, frames].permute(1, 0, 2)  # (B, 12, L)
        chroma = chroma.gather(1, pcs[:, :, None].expand(-1, -1, self.window))
        return leader_inputs(
            midi,
            self.lead_conf[frames],
            self.lead_loud[frames] + gain[:, None],
            chroma,
            self.lead_ref[frames[:, 0]] + gain,
            self.config.norm,
        )

    def validation_windows(self, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Deterministic (tracks, starts): back-to-back windows of every track, at most `limit`."""
        pairs = [
            (t, s)
            for t in range(self.n_tracks)
            for s in range(0, int(self.lengths[t]) - self.window + 1, self.window)
        ][:limit]
        return torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])


# --- loss -------------------------------------------------------------------------------------


def conductor_loss(
    out: torch.Tensor,
    batch: dict[str, torch.Tensor],
    norm: Normalisation,
    label_smoothing: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Per-term losses for raw outputs (B, F, L, N_OUT) (see ConductorNet.forward).

    L1 on normalised loudness (all followers); for pitched followers BCE on voicing, cross-entropy
    on the MIDI note and on its pitch class (the class is what harmony decides, octave is register)
    over voiced frames; for drums BCE on onsets (positives are rare, so weighted up).
    """
    out = out.float()
    mask = batch["mask"]
    pitched = mask & ~batch["drum"][:, :, None]
    drum = mask & batch["drum"][:, :, None]
    target_loud = (batch["loud"] - norm.loudness_mean_db) / norm.loudness_std_db
    terms = {"loudness": (out[..., 0] - target_loud).abs()[mask].mean()}
    voiced = batch["midi"] >= 0
    terms["voicing"] = F.binary_cross_entropy_with_logits(
        out[..., 129][pitched], voiced[pitched].float()
    )
    sel = pitched & voiced
    if sel.any():
        logits, notes = out[..., 1:129][sel], batch["midi"][sel]
        terms["pitch"] = F.cross_entropy(logits, notes, label_smoothing=label_smoothing)
        # Pitch-class logits: log-sum-exp of each class over its octaves (128 padded to 11x12).
        padded = F.pad(logits, (0, 132 - N_PITCHES), value=-1e4).reshape(-1, 11, 12)
        terms["pitch_class"] = F.cross_entropy(
            padded.logsumexp(dim=1), notes % 12, label_smoothing=label_smoothing
        )
    else:
        terms["pitch"] = terms["pitch_class"] = out.sum() * 0.0
    if drum.any():
        terms["onset"] = F.binary_cross_entropy_with_logits(
            out[..., 130][drum],
            batch["onset"][drum],
            pos_weight=torch.tensor(5.0, device=out.device),
        )
    else:
        terms["onset"] = out.sum() * 0.0
    terms["total"] = (
        terms["loudness"]
        + terms["voicing"]
        + terms["pitch"]
        + 0.5 * terms["pitch_class"]
        + terms["onset"]
    )
    return terms


@torch.no_grad()
def evaluate(
    model: ConductorNet,
    sampler: WindowSampler,
    windows: tuple[torch.Tensor, torch.Tensor],
    batch_size: int,
) -> dict[str, float]:
    """Mean validation losses, loudness L1 (dB), pitch-class accuracy on voiced frames, and the
    checkpoint `score` (lower is better): loudness + voicing + onset losses + pitch-class error.

    The score uses the pitch-class error rather than the note cross-entropy because on a small
    corpus the cross-entropy rises (over-confidence) long before accuracy stops improving, while
    loudness, voicing and onsets keep improving: selecting on the loss froze them too early.
    """
    model.eval()
    norm = sampler.config.norm
    sums: dict[str, float] = {}
    n_batches = 0
    l1_db = correct = voiced_total = frames = 0.0
    tracks, starts = windows
    for i in range(0, len(tracks), batch_size):
        batch = sampler.batch(tracks[i : i + batch_size], starts[i : i + batch_size])
        with _autocast(sampler.device):
            out = model(batch["x"], batch["inst"])
        out = out.float()
        for key, value in conductor_loss(out, batch, norm).items():
            sums[key] = sums.get(key, 0.0) + float(value)
        n_batches += 1
        mask = batch["mask"]
        loud = out[..., 0] * norm.loudness_std_db + norm.loudness_mean_db
        l1_db += float((loud.clamp(min=QUIET_DB) - batch["loud"]).abs()[mask].sum())
        frames += float(mask.sum())
        sel = mask & (batch["midi"] >= 0) & ~batch["drum"][:, :, None]
        pred = out[..., 1:129].argmax(-1)
        correct += float(((pred % 12) == (batch["midi"] % 12))[sel].sum())
        voiced_total += float(sel.sum())
    model.train()
    result = {k: v / max(n_batches, 1) for k, v in sums.items()}
    result["loudness_l1_db"] = l1_db / max(frames, 1.0)
    result["pitch_class_acc"] = correct / max(voiced_total, 1.0)
    result["score"] = (
        result["loudness"] + result["voicing"] + result["onset"] + 1.0 - result["pitch_class_acc"]
    )
    return result


def _autocast(device: torch.device) -> torch.autocast:
    # bf16 on GPUs (no loss scaling needed); CPU stays in float32, where bf16 is slower.
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


# --- training loop ----------------------------------------------------------------------------


def _lr_at(step: int, settings: TrainSettings, elapsed_s: float = 0.0) -> float:
    """Linear warm-up then cosine decay to 10 % of the peak, ending at `steps` or at the
    `max_minutes` budget, whichever comes first (so `--steps 1000000 --time-limit 4` anneals)."""
    spent = elapsed_s / (60.0 * settings.max_minutes) if settings.max_minutes else 0.0
    return _lr(step, settings, spent)


def _lr(step: int, settings: TrainSettings, time_progress: float) -> float:
    if step < settings.warmup_steps:
        return settings.lr * (step + 1) / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(settings.steps - settings.warmup_steps, 1)
    progress = max(progress, time_progress)
    return settings.lr * (0.1 + 0.45 * (1.0 + math.cos(math.pi * min(progress, 1.0))))


class ConductorTrainee:
    """The conductor, its windows and its loss, for `ensemble.training.loop.run`. Rendered
    corpora are small, so only the checkpoint with the best validation score is kept."""

    name = "conductor"

    def __init__(self, train: list[ConductorTrack], val: list[ConductorTrack], out: Path,
                 model_config: ModelConfig | None, settings: TrainSettings, device: str,
                 resume: bool) -> None:  # fmt: skip
        from ensemble.training.loop import STATE_FILE, prepare_device

        self.settings, self.out = settings, out
        self.device = prepare_device(device)
        if resume and (out / STATE_FILE).exists():
            self.config = ConductorConfig.from_json(json.loads((out / "config.json").read_text()))
        else:
            self.config = fit_config(train, model_config or ModelConfig())
        torch.manual_seed(settings.seed)
        self.model = ConductorNet(self.config.model, len(self.config.instruments)).to(self.device)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=settings.lr,
            weight_decay=settings.weight_decay,
            fused=self.device.type == "cuda",
        )
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.sampler = WindowSampler(train, self.config, self.device)
        self.val_sampler = WindowSampler(val, self.config, self.device) if val else self.sampler
        self.val_windows = self.val_sampler.validation_windows(limit=256)
        if not val:
            log.warning("no validation tracks: validating on training windows")
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(self.config.to_json(), indent=2))

    def learning_rate(self, step: int, time_progress: float) -> float:
        return _lr(step, self.settings, time_progress)

    def train_step(self) -> dict[str, torch.Tensor]:
        batch = self.sampler.random_batch(self.settings, self.generator)
        with _autocast(self.device):
            raw = self.model(batch["x"], batch["inst"])
        terms = conductor_loss(raw, batch, self.config.norm, self.settings.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        total = terms.pop("total").detach()
        return {"loss": total, **{k: v.detach() for k, v in terms.items()}}

    def validate(self) -> dict[str, float]:
        metrics = evaluate(self.model, self.val_sampler, self.val_windows, self.settings.batch_size)
        log.info(
            "validation score %.4f, loudness L1 %.2f dB, pitch-class accuracy %.1f%%",
            metrics["score"], metrics["loudness_l1_db"], 100 * metrics["pitch_class_acc"],
        )  # fmt: skip
        return metrics

    def save(self, step: int, elapsed_s: float, metrics: dict[str, float], best: bool) -> None:
        if best:
            Conductor(self.config, self.model).save(self.out)

    def extra_state(self) -> dict[str, float]:
        return {}

    def restore(self, state: dict[str, torch.Tensor]) -> None:
        del state  # the architecture comes from the run's own config.json


def fit(
    train: list[ConductorTrack],
    val: list[ConductorTrack],
    out: Path,
    *,
    model_config: ModelConfig | None = None,
    settings: TrainSettings | None = None,
    device: str = "cpu",
    resume: bool = False,
    progress: bool = True,
) -> dict[str, float]:
    """Train on `train`, validate on `val`, write the best model to `out`.

    Writes `out/model.safetensors` + `config.json` (best validation score so far) and the loop's
    `train_state.pt` and `train_log.jsonl` (see `ensemble.training.loop`). Returns the final
    validation metrics.
    """
    from ensemble.training.loop import LoopOptions, run

    settings = settings or TrainSettings()
    trainee = ConductorTrainee(train, val, out, model_config, settings, device, resume)
    options = LoopOptions(
        steps=settings.steps,
        time_limit_min=settings.max_minutes,
        val_every=settings.val_every,
        log_every=settings.log_every,
        resume=resume,
        progress=progress,
    )
    return run(trainee, out, options)


def train_conductor(
    data: Path,
    out: Path,
    *,
    steps: int = 5000,
    device: str = "cpu",
    resume: bool = False,
    batch_size: int = 32,
    max_minutes: float | None = None,
    model_config: ModelConfig | None = None,
    threads: int | None = None,
    seed: int = 0,
    val_every: int = 250,
    progress: bool = True,
) -> dict[str, float]:
    """Train the conductor on the cached corpus at `data` (splits from `data/splits.json`)."""
    if not data.is_dir():
        raise DataError(f"Data folder {data} does not exist; render or download a corpus first.")
    if steps < 1 or batch_size < 1:
        raise EnsembleError("--steps and --batch-size must be at least 1.")
    train = tracks_from_cache(data, "train")
    val = tracks_from_cache(data, "validation")
    if not train:
        raise DataError(
            f"{data} has no cached training tracks with a leader and followers; "
            "build the feature cache first."
        )
    log.info("conductor data: %d training tracks, %d validation tracks", len(train), len(val))
    settings = replace(TrainSettings(), steps=steps, batch_size=batch_size,
                       max_minutes=max_minutes, seed=seed, val_every=val_every)  # fmt: skip
    if threads:
        torch.set_num_threads(threads)
    return fit(train, val, out, model_config=model_config, settings=settings, device=device,
               resume=resume, progress=progress)  # fmt: skip
