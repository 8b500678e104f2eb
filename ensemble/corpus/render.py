"""Render one planned track: arrange a score, write per-stem MIDI, synthesise every stem with
FluidSynth, and store the Slakh-layout folder (stems, mix, MIDI, f0 ground truth, metadata)."""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

from ensemble.config import FRAME_RATE, SAMPLE_RATE
from ensemble.corpus.arrangement import Arrangement
from ensemble.corpus.classical import arrange_chorale, arrange_quartet
from ensemble.corpus.folk import arrange_folk
from ensemble.corpus.midi_out import write_part
from ensemble.corpus.score import UnusableScore, score_data
from ensemble.corpus.sources import Slot
from ensemble.data.midi import midi_f0
from ensemble.errors import DataError

log = logging.getLogger(__name__)

FLUIDSYNTH_GAIN = 0.6
TAIL_S = 1.0  # release and reverb after the last note
MIX_PEAK = 0.9  # the mix is scaled to this peak so it never clips
STEM_PEAK = 0.99  # a louder stem (rare: brass fortissimo) is scaled down to this

ARRANGERS = {"chorale": arrange_chorale, "quartet": arrange_quartet, "folk": arrange_folk}


@dataclass(frozen=True)
class RenderConfig:
    """What every track of one render shares."""

    seed: int
    soundfont: Path
    max_seconds: float
    sample_rate: int = SAMPLE_RATE

    @property
    def hop(self) -> int:
        """Samples per frame of the shared 100 Hz frame grid at this rate."""
        return self.sample_rate // FRAME_RATE

    def matches(self, meta: dict) -> bool:
        """Whether an existing track was rendered with these settings (then it is kept)."""
        stored = meta.get("render")
        # Corpora from before the rate was a setting were all rendered at 16 kHz.
        return isinstance(stored, dict) and {"sample_rate": SAMPLE_RATE} | stored == self.as_meta()

    def as_meta(self) -> dict:
        return {
            "seed": self.seed,
            "soundfont": self.soundfont.name,
            "max_seconds": self.max_seconds,
            "layout": 2,  # 2: metadata holds beats_s and downbeats_s
            "sample_rate": self.sample_rate,
        }


def check_renderer(soundfont: Path) -> str:
    """Path of the fluidsynth binary; DataError naming the package to install if anything lacks."""
    binary = shutil.which("fluidsynth")
    if binary is None:
        raise DataError(
            "FluidSynth is not installed; install it with 'apt-get install fluidsynth "
            "fluid-soundfont-gm' and run the render again."
        )
    if not soundfont.is_file():
        raise DataError(
            f"Soundfont '{soundfont}' does not exist; install 'fluid-soundfont-gm' (apt) or pass "
            "--soundfont with the path of a General MIDI .sf2/.sf3 file."
        )
    with soundfont.open("rb") as handle:
        head = handle.read(12)
    # SF2 and SF3 are RIFF files of form 'sfbk'; FluidSynth renders silence from anything else.
    if head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise DataError(
            f"'{soundfont}' is not a SoundFont (.sf2/.sf3); pass --soundfont with a General MIDI "
            "soundfont, e.g. /usr/share/sounds/sf2/FluidR3_GM.sf2 from 'fluid-soundfont-gm'."
        )
    return binary


def synthesise(
    midi_path: Path, soundfont: Path, n_samples: int, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """(n_samples,) float32 mono rendering of a MIDI file at ``sample_rate`` (padded or cut)."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "out.wav"
        command = [
            "fluidsynth", "-ni", "-q", "-g", str(FLUIDSYNTH_GAIN), "-r", str(sample_rate),
            "-O", "float", "-F", str(wav), str(soundfont), str(midi_path),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not wav.exists():
            raise DataError(
                f"FluidSynth failed on '{midi_path.name}' (exit {result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[:300]}"
            )
        audio, sr = sf.read(wav, dtype="float32", always_2d=True)
    if sr != sample_rate:
        raise DataError(f"FluidSynth wrote {sr} Hz audio instead of {sample_rate} Hz.")
    mono = audio.mean(axis=1)
    out = np.zeros(n_samples, np.float32)
    out[: min(n_samples, len(mono))] = mono[:n_samples]
    return out


def arrange(slot: Slot, seed: int, max_seconds: float) -> Arrangement | None:
    """The first candidate of `slot` that yields an arrangement (None if none does)."""
    for attempt, ref in enumerate(slot.candidates):
        try:
            data = score_data(ref.load(), expand_repeats=ref.kind == "folk")
        except UnusableScore as exc:
            log.debug("%s: skipping %s (%s)", slot.track, ref.name, exc)
            continue
        except Exception as exc:  # music21's parsers raise many exception types on odd files
            log.debug("%s: %s does not parse (%s)", slot.track, ref.name, exc)
            continue
        try:
            rng = np.random.default_rng([seed, slot.index, attempt])
            return ARRANGERS[ref.kind](ref, data, rng, max_seconds)
        except UnusableScore as exc:  # anything else is a bug and stops the render
            log.debug("%s: skipping %s (%s)", slot.track, ref.name, exc)
    return None


def render_track(slot: Slot, out: Path, config: RenderConfig) -> dict | None:
    """Render `slot` into ``out/<track>``; returns the track's metadata (None if no candidate of
    the slot is usable). A track already rendered with the same settings is kept as is."""
    final = out / slot.track
    meta_path = final / "metadata.yaml"
    if meta_path.is_file():
        meta = yaml.safe_load(meta_path.read_text())
        if isinstance(meta, dict) and config.matches(meta):
            return meta
    arrangement = arrange(slot, config.seed, config.max_seconds)
    if arrangement is None:
        log.warning(
            "%s: none of its %d candidate pieces could be arranged; skipped.",
            slot.track,
            len(slot.candidates),
        )
        return None
    partial = out / f".{slot.track}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    meta = _write_track(partial, arrangement, config)
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    return meta


def _write_track(folder: Path, arrangement: Arrangement, config: RenderConfig) -> dict:
    from ensemble.audio import write_audio

    n_frames = int(np.ceil((arrangement.duration_s + TAIL_S) * FRAME_RATE))
    n_samples = n_frames * config.hop
    stems_meta: dict[str, dict] = {}
    mix = np.zeros(n_samples, np.float64)
    for k, part in enumerate(arrangement.parts):
        stem = f"S{k:02d}"
        midi_path = write_part(
            folder / "MIDI" / f"{stem}.mid", part, arrangement.bpm, arrangement.length
        )
        audio = synthesise(midi_path, config.soundfont, n_samples, config.sample_rate)
        peak = float(np.max(np.abs(audio)))
        if peak > STEM_PEAK:
            audio *= STEM_PEAK / peak
        write_audio(folder / "stems" / f"{stem}.flac", audio, config.sample_rate)
        mix += audio
        f0 = np.zeros(n_frames, np.float32) if part.voice.is_drum else midi_f0(midi_path, n_frames)
        (folder / "f0").mkdir(exist_ok=True)
        np.save(folder / "f0" / f"{stem}.npy", f0)
        stems_meta[stem] = {
            "inst_class": part.voice.inst_class,
            "instrument": part.voice.name,
            "program_num": part.voice.program,
            "is_drum": part.voice.is_drum,
            "audio_rendered": True,
            "midi_saved": True,
            "role": part.role,
            "part": part.label,
            "n_notes": len(part.notes),
            "f0": f"f0/{stem}.npy",
        }
    peak = float(np.max(np.abs(mix)))
    mix_gain = MIX_PEAK / peak if peak > 0 else 1.0
    write_audio(folder / "mix.flac", (mix * mix_gain).astype(np.float32), config.sample_rate)
    beats, downbeats = arrangement.beat_grid()
    meta = {
        "source": arrangement.source,
        "kind": arrangement.kind,
        "group": arrangement.group,
        "title": arrangement.title,
        "tempo_bpm": round(arrangement.bpm, 2),
        "transpose": arrangement.transpose,
        "meter": arrangement.meter,
        # Ground truth for beat trackers and metrical models: exact, since the audio came from MIDI.
        "beats_s": [round(t, 4) for t in beats],
        "downbeats_s": [round(t, 4) for t in downbeats],
        "duration_s": round(n_frames / FRAME_RATE, 3),
        "sample_rate": config.sample_rate,
        "frame_rate": FRAME_RATE,
        "audio_dir": "stems",
        "midi_dir": "MIDI",
        "mix_gain": round(mix_gain, 6),
        "render": config.as_meta(),
        "stems": stems_meta,
    }
    (folder / "metadata.yaml").write_text(yaml.safe_dump(meta, sort_keys=False, allow_unicode=True))
    return meta
