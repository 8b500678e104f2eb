"""Perform: an audio seed becomes a multi-instrument ensemble.

Data flow: audio → features (pitch, loudness) → leader controls (auto-adjust, shifts, autotune,
quiet gate) → leader decoder; leader features → conductor → follower parts → follower decoders;
stems → mix stage (`ensemble.mix`: loudness balance by role, stereo placement, one room, a
loudness target under a true-peak ceiling); the stereo stems always sum to the stereo mix.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ensemble.audio import resample
from ensemble.config import FRAME_RATE, HOP_LENGTH, SAMPLE_RATE
from ensemble.controls import (
    autotune,
    gate_loudness,
    hold_unvoiced_pitch,
    octave_shift_toward,
    quantile_map,
)
from ensemble.errors import CheckpointError, EnsembleError
from ensemble.features import FeatureFrame, extract_features, hz_to_midi, midi_to_hz
from ensemble.mix import MixReport, assign_roles, default_pans, downmix, mix_stems
from ensemble.rhythm import BeatGrid, leader_notes, track_beats
from ensemble.threads import release_freed_memory, render_pool

if TYPE_CHECKING:
    from ensemble.conductor import Conductor, FollowerPart
    from ensemble.groove import Context
    from ensemble.instrument import Instrument
    from ensemble.metrics import SongMetrics
    from ensemble.notes import NoteEvent

log = logging.getLogger(__name__)

DEFAULT_CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
LOW_CONFIDENCE = 0.6  # share of sounding frames voiced below which we warn about the input


@dataclass
class PerformSettings:
    """User controls; the defaults are what the app and CLI start from."""

    auto_adjust: bool = True  # octave shift + loudness quantile mapping to each instrument
    octave_shift: int = 0
    semitone_shift: float = 0.0
    loudness_shift_db: float = 0.0
    quiet_threshold_db: float = -60.0  # input frames quieter than this stay silent
    unvoiced_attenuation_db: float = 20.0
    autotune: float = 0.0  # 0 = expressive pitch, 1 = snapped to semitones
    # The mix stage already puts the leader on top (ensemble.mix.ROLE_OFFSET_LU); this lifts it
    # further, like `gains_db`, without naming it.
    leader_gain_db: float = 0.0
    gains_db: dict[str, float] = field(default_factory=dict)  # on top of the loudness balance
    mute: tuple[str, ...] = ()


@dataclass
class Part:
    """The controls one decoder was driven with (T frames)."""

    f0_hz: np.ndarray | None
    loudness_db: np.ndarray
    voiced: np.ndarray
    role: str  # "leader" | "follower"


def plain_name(stem: str, suffix: str) -> str:
    return f"{stem}{suffix}"


@dataclass
class Performance:
    """Result of `Ensemble.perform`: the mix, every stem and what produced them."""

    input: np.ndarray  # (N,) mono at SAMPLE_RATE, the analysed input
    mix: np.ndarray  # (M, 2) float32 stereo at ``sample_rate`` = sum of stems
    stems: dict[str, np.ndarray]  # name -> (M, 2) stereo: balanced, placed, with its room return
    features: FeatureFrame  # features of the input
    parts: dict[str, Part]
    leader: str
    messages: list[str]
    mixing: MixReport  # role, pan, gains and loudness of each stem; the mix's LUFS and true peak
    grid: BeatGrid  # the leader's tempo, beats and meter
    context: Context | None  # key and chords the followers played to (None: no followers)
    sample_rate: int = SAMPLE_RATE  # of the mix and stems: the highest of the decoders' rates

    def metrics(self) -> dict[str, SongMetrics]:
        """Song metrics of the input, the mix and every stem (drums without a melody), measured
        on mono downmixes."""
        from ensemble.metrics import song_metrics

        rate = self.sample_rate
        out = {"input": song_metrics(self.input),
               "mix": song_metrics(downmix(self.mix), sample_rate=rate)}  # fmt: skip
        for name, stem in self.stems.items():
            pitched = self.parts[name].f0_hz is not None
            out[name] = song_metrics(downmix(stem), pitched=pitched, sample_rate=rate)
        return out

    def write(
        self,
        folder: str | Path,
        *,
        name: Callable[[str, str], str] = plain_name,
        audio: bool = True,
        midi: bool = False,
        metrics: Mapping[str, Any] | None = None,
    ) -> list[Path]:
        """The one writer of a performance's files: the mix and ``stems/`` (with ``audio``), the
        arrangement's MIDI (with ``midi``) and ``metrics`` as JSON, named ``name(stem, suffix)``
        ("mix", "<instrument>", "arrangement", "metrics"); returns their paths, the mix first."""
        from ensemble.audio import write_audio

        out = Path(folder)
        paths = []
        if audio:
            rate = self.sample_rate
            paths.append(write_audio(out / name("mix", ".wav"), self.mix, rate))
            paths += [write_audio(out / "stems" / name(stem, ".wav"), sound, rate)
                      for stem, sound in self.stems.items()]  # fmt: skip
        if metrics is not None:
            paths.append(out / name("metrics", ".json"))
            paths[-1].write_text(json.dumps(metrics, indent=1, allow_nan=False))
        if midi:
            from ensemble.arrangement_midi import write_arrangement_midi

            paths.append(write_arrangement_midi(out / name("arrangement", ".mid"), self))
        return paths


class Ensemble:
    """Specialist decoders plus the conductor; decoders load on first use."""

    def __init__(self, root: Path, conductor: Conductor | None = None) -> None:
        self.root = Path(root)
        self._instruments: dict[str, Instrument] = {}
        self._conductor = conductor

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo: str | Path | None = None,
        *,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
    ) -> Ensemble:
        """Load from a checkpoints folder (default: the shipped `checkpoints/`) or a Hub repo id.

        A Hub repo is fetched once with `huggingface_hub.snapshot_download` (set HF_HUB_OFFLINE=1
        to use only the local cache) and must hold the same layout: `<instrument>/` folders with
        model.safetensors + config.json, and `conductor/`.
        """
        root = Path(path_or_repo) if path_or_repo is not None else DEFAULT_CHECKPOINTS
        if path_or_repo is not None and not root.exists():
            root = _snapshot(str(path_or_repo), revision=revision, cache_dir=cache_dir)
        if not root.is_dir():
            raise CheckpointError(f"Checkpoint folder '{root}' does not exist.")
        ensemble = cls(root)
        if not ensemble.available:
            raise CheckpointError(
                f"No instrument checkpoints in '{root}': expected <name>/model.safetensors + "
                "config.json folders (train one with `python -m ensemble train instrument`)."
            )
        return ensemble

    @cached_property
    def available(self) -> list[str]:
        """Instrument names with a checkpoint (the conductor is not an instrument); read once,
        since every `perform` and `instrument` call consults it."""
        from ensemble.instrument import list_pretrained

        return list_pretrained(self.root)

    def instrument(self, name: str) -> Instrument:
        from ensemble.instrument import Instrument

        if name not in self._instruments:
            if name not in self.available:
                raise EnsembleError(
                    f"Unknown instrument '{name}'; available: {', '.join(self.available)}."
                )
            self._instruments[name] = Instrument.from_pretrained(self.root / name)
        return self._instruments[name]

    @property
    def conductor(self) -> Conductor:
        from ensemble.conductor import Conductor

        if self._conductor is None:
            path = self.root / "conductor"
            if not (path / "model.safetensors").exists():
                raise CheckpointError(
                    f"No conductor checkpoint in '{path}', so followers cannot be played; choose "
                    "only a leader, or train one with `python -m ensemble train conductor`."
                )
            self._conductor = Conductor.from_pretrained(path)
        return self._conductor

    def perform(
        self,
        audio: np.ndarray,
        instruments: Sequence[str],
        leader: str | None = None,
        settings: PerformSettings | None = None,
        features: FeatureFrame | None = None,
    ) -> Performance:
        """Perform ``audio`` (N,) float32 16 kHz mono with ``instruments``.

        The input's (predominant) melody drives the ``leader`` decoder; the conductor plays the
        others; the mix stage (`ensemble.mix`) balances, places and levels the stems, so the
        Performance's mix and stems are (N, 2) stereo. ``features`` may be passed when already
        computed for ``audio``.
        """
        settings = settings or PerformSettings()
        active, leader = self._lineup(instruments, leader, settings)
        features = features if features is not None else extract_features(audio)
        messages = _input_messages(features, settings.quiet_threshold_db)
        parts = {leader: _leader_part(features, self.instrument(leader), settings)}
        kinds = {name: self.instrument(name).kind for name in active}
        registers = {
            name: float(self.instrument(name).stats["pitch_midi_mean"])
            for name, kind in kinds.items()
            if kind == "pitched"
        }
        roles = assign_roles(leader, kinds, registers)
        view = _conductor_view(features, parts[leader], settings)
        notes = leader_notes(view)  # segmented once: beats, key and chords use them
        grid = track_beats(view, notes)
        followers = {n: roles[n] for n in active if n != leader}
        context = (self._accompany(view, followers, registers, grid, notes, parts, settings,
                                   messages) if followers else None)  # fmt: skip
        rate = max(self.instrument(name).config.sample_rate for name in active)
        gains_db = dict(settings.gains_db)
        gains_db[leader] = gains_db.get(leader, 0.0) + settings.leader_gain_db
        mix, stems, mixing = mix_stems(
            self._render(parts, active, features.n_frames, rate), roles,
            default_pans(roles, registers), gains_db=gains_db, sample_rate=rate,
        )  # fmt: skip
        if (note := mixing.message()) is not None:
            messages.append(note)
        if settings.mute:
            messages.append(f"Muted: {', '.join(settings.mute)}.")
        n_input = features.n_frames * HOP_LENGTH
        return Performance(
            grid=grid, context=context, input=np.asarray(audio[:n_input], np.float32), mix=mix,
            stems=stems, features=features, parts=parts, leader=leader, messages=messages,
            mixing=mixing, sample_rate=rate,
        )  # fmt: skip

    def _lineup(
        self, instruments: Sequence[str], leader: str | None, settings: PerformSettings
    ) -> tuple[list[str], str]:
        """(the unmuted instruments, the leader): checked, the leader chosen when not given."""
        names = _validate_instruments(instruments, self.available)
        active = [n for n in names if n not in settings.mute]
        if not active:
            raise EnsembleError("Every chosen instrument is muted; unmute at least one.")
        leader = leader or next((n for n in active if self.instrument(n).kind == "pitched"), None)
        if leader is None or leader not in active:
            raise EnsembleError(
                "Choose a pitched, unmuted leader among the chosen instruments "
                f"({', '.join(active)}); it plays the input's melody."
            )
        if self.instrument(leader).kind != "pitched":
            raise EnsembleError(f"'{leader}' has no pitch, so it cannot lead; pick a melody one.")
        return active, leader

    def _accompany(
        self,
        view: FeatureFrame,
        followers: dict[str, str],
        registers: dict[str, float],
        grid: BeatGrid,
        notes: list[NoteEvent],
        parts: dict[str, Part],
        settings: PerformSettings,
        messages: list[str],
    ) -> Context:
        """The conductor's parts for ``followers`` ({name: role}), added to ``parts``."""
        accompaniment = self.conductor.accompany(
            view, followers, registers, grid, notes=notes, messages=messages
        )
        for name, played in accompaniment.parts.items():
            parts[name] = _follower_part(played, self.instrument(name), settings)
        for name, played_by in accompaniment.stand_ins.items():
            if played_by != name:
                messages.append(
                    f"{name} plays the conductor's {played_by} part in its own register "
                    f"({name} is not in the conductor's vocabulary)."
                )
        return accompaniment.context

    def _render(self, parts: dict[str, Part], names: list[str], n_frames: int, rate: int
                ) -> dict[str, np.ndarray]:  # fmt: skip
        """Each decoder's dry audio, ``n_frames`` long at ``rate``, in ``names`` order (a decoder
        of a lower rate is resampled once, band-limited)."""
        n_samples = n_frames * rate // FRAME_RATE

        def render(name: str) -> np.ndarray:
            part, instrument = parts[name], self.instrument(name)
            rendered = instrument.render(part.f0_hz, part.loudness_db)
            rendered = resample(rendered, instrument.config.sample_rate, rate)[:n_samples]
            return np.pad(rendered, (0, n_samples - len(rendered)))

        # Each decoder is a one-thread batch-1 GRU that releases the GIL: one per core that this
        # call may use (`ensemble.threads` shares the cores between nested pools).
        with render_pool(len(names), "decoder") as pool:
            rendered = dict(zip(names, pool.map(render, names), strict=True))
        release_freed_memory()  # the decoders' scratch, before the mix stage needs as much
        return rendered


def _conductor_view(features: FeatureFrame, leader: Part, settings: PerformSettings
                    ) -> FeatureFrame:  # fmt: skip
    """The leader as the followers hear it: as played (shifted pitch), chroma moved with it."""
    return FeatureFrame(
        f0_hz=leader.f0_hz,  # type: ignore[arg-type]
        confidence=features.confidence,
        loudness_db=features.loudness_db,
        rms=features.rms,
        chroma=np.roll(features.chroma, round(settings.semitone_shift), axis=0),
    )


def _leader_part(features: FeatureFrame, instrument: Instrument, settings: PerformSettings) -> Part:
    sounding = features.loudness_db >= settings.quiet_threshold_db
    voiced = features.voiced & sounding
    midi = hold_unvoiced_pitch(hz_to_midi(features.f0_hz), voiced)
    loudness = features.loudness_db.astype(np.float64)
    octaves = settings.octave_shift
    if settings.auto_adjust:
        octaves += octave_shift_toward(midi, voiced, instrument.stats["pitch_midi_mean"])
        loudness = quantile_map(loudness, voiced, instrument.stats["loudness_quantiles"])
    midi = autotune(midi + 12 * octaves + settings.semitone_shift, settings.autotune)
    loudness = gate_loudness(
        loudness + settings.loudness_shift_db,
        features.loudness_db,
        voiced,
        threshold_db=settings.quiet_threshold_db,
        unvoiced_attenuation_db=settings.unvoiced_attenuation_db,
    )
    return Part(
        f0_hz=midi_to_hz(midi).astype(np.float32),
        loudness_db=loudness.astype(np.float32),
        voiced=voiced,
        role="leader",
    )


def _follower_part(played: FollowerPart, instrument: Instrument, settings: PerformSettings) -> Part:
    loudness = played.loudness_db.astype(np.float64) + settings.loudness_shift_db
    if instrument.kind == "drums":
        return Part(None, loudness.astype(np.float32), played.voiced, "follower")
    midi = hold_unvoiced_pitch(hz_to_midi(played.f0_hz), played.voiced)
    loudness = np.where(played.voiced, loudness, loudness - settings.unvoiced_attenuation_db)
    return Part(
        f0_hz=midi_to_hz(midi).astype(np.float32),
        loudness_db=loudness.astype(np.float32),
        voiced=played.voiced,
        role="follower",
    )


def _validate_instruments(instruments: Sequence[str], available: list[str]) -> list[str]:
    names = [n.strip().lower() for n in instruments if n.strip()]
    if not names:
        raise EnsembleError(f"Choose at least one instrument: {', '.join(available)}.")
    unknown = [n for n in names if n not in available]
    if unknown:
        raise EnsembleError(
            f"Unknown instrument(s) {', '.join(unknown)}; available: {', '.join(available)}."
        )
    if len(set(names)) != len(names):
        raise EnsembleError("Each instrument can be chosen once.")
    return names


def _input_messages(features: FeatureFrame, threshold_db: float) -> list[str]:
    sounding = features.loudness_db >= threshold_db
    if not np.any(sounding):
        return [f"The input stays under the quiet threshold ({threshold_db:g} dB): silence."]
    voiced_share = float(np.mean(features.voiced[sounding]))
    if voiced_share == 0.0:
        return ["No pitch was found in the input (unpitched or noise), so the leader rests."]
    if voiced_share < LOW_CONFIDENCE:
        return [
            f"Pitch confidence is low ({voiced_share:.0%} of sounding frames voiced): the input "
            "may be polyphonic or noisy. The leader follows its predominant melody."
        ]
    return []


def _snapshot(repo_id: str, *, revision: str | None, cache_dir: str | Path | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir))
    except (LocalEntryNotFoundError, HfHubHTTPError, ValueError, OSError) as exc:
        raise CheckpointError(
            f"'{repo_id}' is neither a local checkpoint folder nor a reachable Hugging Face repo "
            f"({type(exc).__name__}); check the path, or the repo id and network/cache."
        ) from exc
