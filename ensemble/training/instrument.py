"""`python -m ensemble train instrument`: fit one specialist decoder on one instrument's stems.

Data: the feature cache (`ensemble.data.cache`) is all the trainer reads; no audio files are
decoded, so the cache folder plus ``splits.json`` can be copied to a GPU machine on its own. All of
an instrument's training audio is held in memory (on the GPU when training there) as int16 and
random excerpts are gathered by index arithmetic, so there is no data-loader in the loop.

f0 choice: the decoders are trained on the tracker's f0 (SwiftF0, what inference sees), with the
MIDI f0 used only where the tracker is unsure (confidence < 0.5) or more than a semitone away from
a sounding MIDI note (octave errors, the wrong note of a chord). Frames with neither hold the last
pitch, exactly as `ensemble.controls.hold_unvoiced_pitch` does at performance time.

Optimisation: Adam, learning rate decayed exponentially from ``lr`` to ``lr / 10`` over the run;
the run length is the smaller of ``steps`` and ``time_limit_min`` (the decay follows whichever
ends first), so a time-boxed GPU run still anneals. Gradients are clipped at norm 3.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ensemble.config import FRAME_RATE, HOP_LENGTH, SAMPLE_RATE
from ensemble.controls import QUANTILE_LEVELS, hold_unvoiced_pitch
from ensemble.errors import DataError, EnsembleError
from ensemble.features import VOICED_THRESHOLD, hz_to_midi, midi_to_hz

log = logging.getLogger(__name__)

ACTIVE_DB = -60.0  # a frame counts as sounding above this A-weighted loudness
MIN_ACTIVE_FRACTION = 0.3  # excerpts quieter than this are skipped


@dataclass
class Stem:
    """One stem's arrays on the project grid (T frames, T * hop samples at the decoder's rate)."""

    audio: np.ndarray  # (T * hop,) int16
    f0_hz: np.ndarray  # (T,) training f0 (see `training_f0`), all > 0 for pitched stems
    loudness_db: np.ndarray  # (T,)
    voiced: np.ndarray  # (T,) bool, frames with a trusted pitch
    is_drum: bool = False
    name: str = ""


@dataclass
class TrainOptions:
    steps: int = 30_000
    batch_size: int = 32  # the GPU recipe; the CLI defaults to 8 x 1 s on CPU
    seconds: float = 2.0  # excerpt length
    lr: float = 1e-3
    device: str = "cpu"
    # bf16 autocast for the network on CUDA (the synth always runs in fp32). Off by default: on an
    # H100 the small GRU ran slower under autocast (22.9 vs 31.9 steps/s, batch 32 × 2 s) since
    # fp32 matmuls already use TF32 and the casts cost more than they save.
    amp: bool = False
    time_limit_min: float | None = None
    val_every: int = 500
    log_every: int = 50
    val_excerpts: int = 32
    fft_sizes: tuple[int, ...] | None = None  # None: `dsp.loss_fft_sizes` of the decoder's rate
    seed: int = 0
    threads: int | None = None  # CPU intra-op threads (1 is far faster on a busy shared CPU)
    resume: bool = False
    init: str | None = None  # fine-tune from this checkpoint (name or folder) instead of scratch
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # recorded in config.json "training"


def training_f0(
    f0_tracked: np.ndarray, confidence: np.ndarray, f0_truth: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """The f0 a decoder trains on, and where it is trusted.

    Args:
        f0_tracked: (T,) tracker f0 in Hz.
        confidence: (T,) tracker voicing confidence.
        f0_truth: (T,) f0 of the sounding MIDI note in Hz (0 where none), or None.

    Returns:
        f0_hz (T,) float32, every frame > 0 (unvoiced frames hold the last pitch), and voiced (T,).
    """
    tracked = np.asarray(f0_tracked, np.float64)
    use_tracked = (np.asarray(confidence) >= VOICED_THRESHOLD) & (tracked > 0)
    if f0_truth is None:
        f0 = np.where(use_tracked, tracked, 0.0)
        voiced = use_tracked
    else:
        midi_f0 = np.asarray(f0_truth, np.float64)
        sounding = midi_f0 > 0
        off = np.abs(hz_to_midi(tracked) - hz_to_midi(midi_f0)) > 1.0
        use_tracked &= ~(sounding & off)
        voiced = use_tracked | sounding
        f0 = np.where(use_tracked, tracked, np.where(sounding, midi_f0, 0.0))
    if not voiced.any():
        return np.full(len(f0), 220.0, np.float32), voiced
    return midi_to_hz(hold_unvoiced_pitch(hz_to_midi(f0), voiced)).astype(np.float32), voiced


def stem_audio_file(root: Path, track: str, stem: str, sample_rate: int) -> np.ndarray:
    """(N,) int16 audio of a Slakh-layout stem file at ``sample_rate``, read beside the cache.

    The cache holds 16 kHz audio (what analysis uses); a decoder trained at another rate reads
    the rendered stem itself, which must already be at that rate (no resampling: a 16 kHz stem
    upsampled has nothing above 8 kHz to learn from).
    """
    import soundfile as sf

    from ensemble.data.slakh import AUDIO_SUFFIXES

    folder = root / track / "stems"
    files = [folder / f"{stem}{suffix}" for suffix in AUDIO_SUFFIXES]
    path = next((f for f in files if f.is_file()), None)
    if path is None:
        raise DataError(
            f"Training at {sample_rate} Hz reads the stems themselves, and {folder}/{stem}.flac "
            "is missing; train from the rendered corpus folder, not a pack."
        )
    info = sf.info(path)
    if info.samplerate != sample_rate:
        raise DataError(
            f"{path} is {info.samplerate} Hz but the decoder trains at {sample_rate} Hz; render "
            f"the corpus with 'corpus render --sample-rate {sample_rate}'."
        )
    audio, _ = sf.read(path, dtype="int16", always_2d=True)
    return audio.mean(axis=1).astype(np.int16) if audio.shape[1] > 1 else audio[:, 0]


def _stem_from_cache(
    arrays: dict[str, Any], label: str, audio: np.ndarray | None = None, hop: int = HOP_LENGTH
) -> Stem:
    """A `Stem` from one stem's cache entry (see `ensemble.data.cache`); ``audio`` replaces the
    cached 16 kHz audio for a decoder with another ``hop`` (samples per frame)."""
    loud = np.asarray(arrays["loudness_db"], np.float32)
    n_samples = len(loud) * hop
    audio = np.asarray(arrays["audio"] if audio is None else audio, np.int16)[:n_samples]
    audio = np.pad(audio, (0, n_samples - len(audio)))
    if arrays["is_drum"]:
        return Stem(
            audio, np.zeros(len(loud), np.float32), loud, np.zeros(len(loud), bool), True, label
        )
    f0, voiced = training_f0(arrays["f0_tracked"], arrays["confidence"], arrays["f0_truth"])
    return Stem(audio, f0, loud, voiced, False, label)


def load_stems(
    root: str | Path, instrument: str, split: str, sample_rate: int = SAMPLE_RATE
) -> list[Stem]:
    """All stems of ``instrument`` in ``split`` of the feature cache under ``root``, with audio at
    ``sample_rate`` (16 kHz: only ``root/cache/*.npz`` is read; otherwise the stem files too)."""
    from ensemble.data.cache import iter_cached_tracks

    root = Path(root)
    hop = sample_rate // FRAME_RATE
    stems = []
    for track in iter_cached_tracks(root, split):
        for stem_id, arrays in track.stems.items():
            if arrays["instrument"] != instrument:
                continue
            audio = None
            if sample_rate != SAMPLE_RATE:
                audio = stem_audio_file(root, track.track, stem_id, sample_rate)
            stems.append(_stem_from_cache(arrays, f"{track.track}/{stem_id}", audio, hop))
    return stems


def dataset_stats(stems: Sequence[Stem], kind: str) -> dict[str, Any]:
    """Pitch and loudness distribution of the training audio, saved in config.json.

    Loudness quantiles are over sounding frames (voiced ones for pitched instruments, as
    `ensemble.perform` maps over voiced input frames), at `ensemble.controls.QUANTILE_LEVELS`.
    """
    loud = np.concatenate([s.loudness_db for s in stems])
    sounding = loud > ACTIVE_DB
    stats: dict[str, Any] = {
        "quantile_levels": [round(float(q), 4) for q in QUANTILE_LEVELS],
        "seconds": round(len(loud) / FRAME_RATE, 1),
        "n_stems": len(stems),
    }
    if kind == "pitched":
        voiced = np.concatenate([s.voiced for s in stems]) & sounding
        midi = hz_to_midi(np.concatenate([s.f0_hz for s in stems]))[voiced]
        if len(midi) == 0:
            raise DataError("The training stems have no voiced, sounding frames.")
        stats.update(
            pitch_midi_mean=round(float(midi.mean()), 3),
            pitch_midi_std=round(float(midi.std()), 3),
            pitch_midi_quantiles=[round(float(v), 3) for v in np.quantile(midi, QUANTILE_LEVELS)],
            voiced_fraction=round(float(voiced.mean()), 4),
        )
        sounding = voiced
    if not sounding.any():
        raise DataError("The training stems are silent (no frame above -60 dB).")
    active = loud[sounding]
    stats.update(
        loudness_db_mean=round(float(active.mean()), 3),
        loudness_quantiles=[round(float(v), 3) for v in np.quantile(active, QUANTILE_LEVELS)],
    )
    return stats


class ExcerptSampler:
    """Random fixed-length excerpts of a set of stems, gathered on the training device.

    Every frame start whose excerpt lies inside one stem and is sounding on at least
    MIN_ACTIVE_FRACTION of its frames is a candidate; a batch is a uniform draw of candidates.
    """

    def __init__(self, stems: Sequence[Stem], n_frames: int, device: str) -> None:
        import torch

        self.n_frames = n_frames
        self.hop = len(stems[0].audio) // len(stems[0].loudness_db) if stems else 1
        starts, offset = [], 0
        for stem in stems:
            t = len(stem.loudness_db)
            if t >= n_frames:
                active = np.concatenate([[0], np.cumsum(stem.loudness_db > ACTIVE_DB)])
                frac = (active[n_frames:] - active[:-n_frames]) / n_frames
                starts.append(offset + np.flatnonzero(frac >= MIN_ACTIVE_FRACTION))
            offset += t
        self.candidates = torch.from_numpy(np.concatenate(starts or [np.zeros(0, np.int64)]))
        if len(self.candidates) == 0:
            raise DataError(
                f"No sounding excerpt of {n_frames / 100:.1f} s in {len(stems)} stem(s); use "
                "shorter --seconds or check that the stems are not silent."
            )
        self.f0 = torch.from_numpy(np.concatenate([s.f0_hz for s in stems])).to(device)
        self.loudness = torch.from_numpy(np.concatenate([s.loudness_db for s in stems])).to(device)
        self.audio = torch.from_numpy(np.concatenate([s.audio for s in stems])).to(device)
        self.device = device
        self._frame_idx = torch.arange(n_frames, device=device)
        self._sample_idx = torch.arange(n_frames * self.hop, device=device)

    def __len__(self) -> int:
        return len(self.candidates)

    def batch(self, size: int, generator: Any) -> tuple[Any, Any, Any]:
        """(f0 (B, F), loudness (B, F), audio (B, F * hop) float32) for ``size`` random excerpts."""
        import torch

        pick = torch.randint(len(self.candidates), (size,), generator=generator)
        start = self.candidates[pick].to(self.device).unsqueeze(1)
        frames = start + self._frame_idx
        samples = start * self.hop + self._sample_idx
        audio = self.audio[samples].float() / 32768.0
        return self.f0[frames], self.loudness[frames], audio


def _architecture(config: Any) -> dict[str, Any]:
    return {k: v for k, v in config.to_dict().items() if k not in ("stats", "training")}


def _initial_state(init: str, config: Any, model: Any) -> dict[str, Any]:
    """Weights of the checkpoint ``init`` for ``model``: as they are at the same rate, mapped by
    `rate_transfer.transfer_state` from another rate."""
    from ensemble.instrument import Instrument
    from ensemble.training.rate_transfer import transfer_state

    base = Instrument.from_pretrained(init)
    if base.config.sample_rate != config.sample_rate:
        return transfer_state(base.model.state_dict(), base.config, config, model.state_dict())
    if _architecture(base.config) != _architecture(config):
        raise EnsembleError(
            f"--init {init} has another architecture than this run (e.g. --hidden-size); drop "
            "the override to fine-tune it."
        )
    return base.model.state_dict()


class DecoderTrainee:
    """A decoder, its excerpts and its loss, for `ensemble.training.loop.run`."""

    def __init__(self, train: Sequence[Stem], validation: Sequence[Stem], config: Any,
                 out: Path, options: TrainOptions) -> None:  # fmt: skip
        import torch

        from ensemble.dsp import loss_fft_sizes
        from ensemble.instrument import build_decoder
        from ensemble.training.loop import STATE_FILE, prepare_device

        self.device = prepare_device(options.device, options.threads)
        self.name, self.config, self.out, self.options = config.name, config, out, options
        config.stats = dataset_stats(train, config.kind)
        self.fft_sizes = options.fft_sizes or loss_fft_sizes(config.sample_rate)
        n_frames = round(options.seconds * FRAME_RATE)
        self.sampler = ExcerptSampler(train, n_frames, options.device)
        self.generator = torch.Generator().manual_seed(options.seed)
        torch.manual_seed(options.seed)
        self.model = build_decoder(config).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=options.lr)
        if options.init and not (options.resume and (out / STATE_FILE).exists()):
            self.model.load_state_dict(_initial_state(options.init, config, self.model))
            log.info("fine-tuning from %s", options.init)
        if not validation:
            log.warning("no validation stems: validating on training excerpts")
        held_out = ExcerptSampler(validation, n_frames, options.device) if validation else None
        source = held_out or self.sampler
        count = min(options.val_excerpts, len(source))
        self.val_batch = source.batch(count, torch.Generator().manual_seed(1234))
        self.amp = options.amp and self.device.type == "cuda"

    def learning_rate(self, step: int, time_progress: float) -> float:
        """Exponential decay from ``lr`` to ``lr / 10`` over the steps or the time budget."""
        return self.options.lr * 0.1 ** min(max(step / self.options.steps, time_progress), 1.0)

    def _loss(self, batch: tuple[Any, Any, Any], generator: Any = None) -> Any:
        import torch

        from ensemble.dsp import multiscale_spectral_loss
        from ensemble.instrument import decode

        f0, loudness, audio = batch
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.amp):
            pred = decode(self.model, f0, loudness, generator)
        return multiscale_spectral_loss(pred, audio, self.fft_sizes)

    def train_step(self) -> dict[str, Any]:
        import torch

        loss = self._loss(self.sampler.batch(self.options.batch_size, self.generator))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 3.0)
        self.optimizer.step()
        return {"loss": loss.detach()}

    def validate(self) -> dict[str, float]:
        import torch

        noise = torch.Generator(device=self.device).manual_seed(0)
        value = float(self._loss(self.val_batch, noise))
        return {"score": value, "val_loss": value}

    def save(self, step: int, elapsed_s: float, metrics: dict[str, float], best: bool) -> None:
        """Every validation is saved (the decoders keep improving; the last one is kept)."""
        from ensemble.instrument import save_checkpoint

        excluded = ("progress", "resume", "threads")
        self.config.training = {
            "steps": step,
            "elapsed_s": round(elapsed_s, 1),
            "val_loss": metrics["val_loss"],
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "options": {k: v for k, v in asdict(self.options).items() if k not in excluded},
        }
        save_checkpoint(self.out, self.config, self.model)

    def extra_state(self) -> dict[str, Any]:
        return {"config": json.dumps(self.config.to_dict())}

    def restore(self, state: dict[str, Any]) -> None:
        from ensemble.instrument import InstrumentConfig

        saved = InstrumentConfig.from_dict(json.loads(state["config"]))
        if _architecture(saved) != _architecture(self.config):
            raise EnsembleError(
                f"The run in {self.out} used another architecture; resume with the same options."
            )


def fit(
    train: Sequence[Stem],
    validation: Sequence[Stem],
    config: Any,
    out: str | Path,
    options: TrainOptions,
) -> Path:
    """Train a decoder for ``config`` (an `InstrumentConfig`) and write its checkpoint to ``out``.

    Writes ``model.safetensors`` + ``config.json`` (with dataset stats) at every validation and at
    the end, and the loop's ``train_log.jsonl`` and ``train_state.pt`` (see
    `ensemble.training.loop`).
    """
    from ensemble.training.loop import LoopOptions, run

    out = Path(out)
    trainee = DecoderTrainee(train, validation, config, out, options)
    loop = LoopOptions(
        steps=options.steps,
        time_limit_min=options.time_limit_min,
        val_every=options.val_every,
        log_every=options.log_every,
        resume=options.resume,
        progress=options.progress,
    )
    run(trainee, out, loop)
    return out


def train_instrument(
    data: str | Path,
    instrument: str,
    out: str | Path,
    options: TrainOptions | None = None,
    hidden_size: int | None = None,
    sample_rate: int | None = None,
) -> Path:
    """Train ``instrument`` from the feature cache under ``data`` and write its checkpoint to
    ``out``. Several calls can run in parallel processes on one GPU (each holds its own data).

    ``sample_rate`` (default: the ``--init`` checkpoint's, else 16 kHz) is the rate the decoder
    renders at; above 16 kHz the stems are read at that rate beside the cache."""
    from ensemble.instrument import Instrument, InstrumentConfig, default_config

    options = options or TrainOptions()
    base = Instrument.from_pretrained(options.init).config if options.init else None
    rate = sample_rate or (base.sample_rate if base else SAMPLE_RATE)
    train = load_stems(data, instrument, "train", rate)
    if not train:
        raise DataError(
            f"No '{instrument}' stems in the train split of the cache under {data}; build the "
            "cache first (`python -m ensemble corpus cache`) or check the instrument name."
        )
    validation = load_stems(data, instrument, "validation", rate)
    kind = "drums" if train[0].is_drum else "pitched"
    config = default_config(instrument, kind, rate)
    if base is not None and base.sample_rate == rate:  # fine-tuning keeps the architecture
        config = InstrumentConfig.from_dict(base.to_dict() | {"name": instrument, "stats": {}})
    if hidden_size is not None:
        config.hidden_size = hidden_size
    log.info(
        "%s (%s): %d train stems (%.0f s), %d validation stems",
        instrument,
        kind,
        len(train),
        sum(len(s.loudness_db) for s in train) / 100,
        len(validation),
    )
    return fit(train, validation, config, out, options)
