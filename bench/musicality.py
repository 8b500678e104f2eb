"""Does the ensemble play like a band? Shipped vs previous version vs the human arrangement.

Usage: python bench/musicality.py [--data data/corpus_big] [--split test] [--seconds 20]
                                  [--instruments violin,cello,bass,drums] [--previous REV]
                                  [--max-tracks N] [--json PATH] [--beats-only]

For every held-out track of a rendered corpus (`corpus render`), the melody stem alone (first
``--seconds`` s) is the input. Three arrangements of the same bars are measured the same way:
  shipped  — this checkout's `Ensemble.perform`;
  previous — `python -m ensemble perform` run from a git worktree of ``--previous`` (its code and
             its checkpoints), in a subprocess;
  human    — the track's own stems (the score's other parts, and its drum part).
Pitch of every stem is measured with librosa's pYIN (independent of SwiftF0, which Ensemble uses
inside) and segmented into notes. Measures:
  (a) consonance: share of frames where a follower and the leader both sound whose interval class
      is consonant (unison/octave, thirds, fourth, fifth, sixths);
  (b) in key: share of follower note time on the scale of the song's key (Krumhansl–Kessler key of
      ALL the human parts' MIDI notes: the ground truth, not the melody's estimate);
  (c) note changes per second per follower;
  (d) drum onset F1 (±50 ms) against the track's drum stem, and chance: random onsets, same count;
  (e) loudness gap of each follower to the leader in LU (BS.1770, pyloudnorm), drums apart;
  (f) beat and downbeat F-measure (±70 ms) of `ensemble.rhythm` on the melody stem against the
      corpus's exact beats, beside librosa's `beat_track` and PLP.
Plus a balance check on the dense full-mix examples: each follower's gap to the leader.
--beats-only measures (f) alone (seconds, not the whole band), for changes to the beat tracker,
on the melody stems and on the tracks' full mixes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import librosa
import numpy as np
import pyloudnorm
import soundfile as sf
import yaml

from ensemble.audio import load_audio, resample, write_audio
from ensemble.conductor import detect_onsets
from ensemble.config import FRAME_RATE, SAMPLE_RATE
from ensemble.corpus.harmony import key_of_histogram
from ensemble.data.midi import read_midi_notes
from ensemble.features import a_weighted_loudness, extract_features
from ensemble.notes import segment_notes
from ensemble.perform import Ensemble
from ensemble.rhythm import f_measure, track_beats
from ensemble.tonality import Key

REPO = Path(__file__).resolve().parent.parent
PYIN_HOP = 320  # 20 ms: enough for note changes, 2x cheaper than 10 ms
CONSONANT = {0, 3, 4, 5, 7, 8, 9}
ONSET_TOLERANCE_S = 0.05
DEFAULT_PREVIOUS = "021cd34"  # main before the band work (conductor decoding per frame)


def pitch_track(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(MIDI (T,), voiced (T,)) by pYIN at PYIN_HOP, resampled onto the 100 Hz frame grid."""
    f0, voiced, _ = librosa.pyin(
        audio, fmin=40.0, fmax=1600.0, sr=SAMPLE_RATE, frame_length=2048, hop_length=PYIN_HOP
    )
    midi = np.where(voiced, librosa.hz_to_midi(np.nan_to_num(f0, nan=1.0)), 0.0)
    n = len(audio) // (SAMPLE_RATE // FRAME_RATE)
    idx = np.minimum((np.arange(n) * (SAMPLE_RATE // FRAME_RATE)) // PYIN_HOP, len(midi) - 1)
    return midi[idx], voiced[idx]


def mono(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, np.float32)
    return audio.mean(axis=1) if audio.ndim == 2 else audio


def lufs(audio: np.ndarray) -> float:
    meter = pyloudnorm.Meter(SAMPLE_RATE)
    value = meter.integrated_loudness(np.asarray(audio, np.float64))
    return float(value) if np.isfinite(value) else -70.0


def measure(stems: dict[str, np.ndarray], leader: str, drums: str | None, key: Key) -> dict:
    """Measures (a)-(e) of one arrangement: {stem name: mono audio}."""
    lead_midi, lead_voiced = pitch_track(stems[leader])
    lead_lufs = lufs(stems[leader])
    consonant = frames = 0
    in_key = note_time = 0.0
    changes, gaps = [], {}
    for name, audio in stems.items():
        if name == leader:
            continue
        gaps[name] = round(lead_lufs - lufs(audio), 2)
        if name == drums:
            continue
        midi, voiced = pitch_track(audio)
        n = min(len(midi), len(lead_midi))
        both = voiced[:n] & lead_voiced[:n]
        interval = np.round(midi[:n] - lead_midi[:n]).astype(int) % 12
        consonant += int(np.isin(interval[both], list(CONSONANT)).sum())
        frames += int(both.sum())
        notes = segment_notes(midi, voiced, a_weighted_loudness(audio)[: len(midi)])
        for note in notes:
            note_time += note.duration_s
            in_key += note.duration_s * (note.pitch % 12 in key.scale)
        moves = sum(a.pitch != b.pitch for a, b in itertools.pairwise(notes))
        changes.append(moves / (len(audio) / SAMPLE_RATE))
    return {
        "consonance": consonant / frames if frames else None,
        "in_key": in_key / note_time if note_time else None,
        "changes_per_s": float(np.mean(changes)) if changes else None,
        "gap_lu": gaps,
    }


def drum_f1(performed: np.ndarray, reference: np.ndarray, rng: np.random.Generator) -> tuple:
    """(onset F1 against the reference drum stem, chance F1 of random onsets of the same count)."""
    est = detect_onsets(a_weighted_loudness(performed)) / FRAME_RATE
    ref = detect_onsets(a_weighted_loudness(reference)) / FRAME_RATE
    seconds = len(reference) / SAMPLE_RATE
    chance = [
        f_measure(np.sort(rng.uniform(0, seconds, len(est))), ref, ONSET_TOLERANCE_S)
        for _ in range(20)
    ]
    return f_measure(est, ref, ONSET_TOLERANCE_S), float(np.mean(chance))


def song_key(folder: Path, meta: dict, seconds: float) -> Key:
    hist = np.zeros(12)
    for stem, info in meta["stems"].items():
        if info["is_drum"]:
            continue
        for note in read_midi_notes(folder / "MIDI" / f"{stem}.mid"):
            if note.start < seconds:
                hist[note.pitch % 12] += min(note.end, seconds) - note.start
    return Key(*key_of_histogram(hist))


def previous_stems(rev: str, inputs: list[Path], instruments: str, work: Path) -> list[Path]:
    """Perform every input with the code and checkpoints of git revision ``rev``."""
    tree = work / "previous"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "-f", "--detach", str(tree), rev],
                   check=True, capture_output=True)  # fmt: skip
    outs = []
    try:
        for path in inputs:
            out = work / f"prev_{path.stem}"
            subprocess.run(
                [sys.executable, "-m", "ensemble", "perform", str(path), "--instruments",
                 instruments, "--out", str(out)],
                cwd=tree, check=True, capture_output=True,
                env={**os.environ, "PYTHONPATH": str(tree)},
            )  # fmt: skip
            outs.append(out)
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                       check=False, capture_output=True)  # fmt: skip
    return outs


def beat_scores(audio: np.ndarray, beats: np.ndarray, downbeats: np.ndarray) -> dict:
    grid = track_beats(extract_features(audio))
    _, librosa_beats = librosa.beat.beat_track(y=audio, sr=SAMPLE_RATE, units="time")
    pulse = librosa.beat.plp(y=audio, sr=SAMPLE_RATE)
    plp = librosa.times_like(pulse, sr=SAMPLE_RATE)[np.flatnonzero(librosa.util.localmax(pulse))]
    return {
        "ensemble": f_measure(grid.beats, beats),
        "beat_track": f_measure(librosa_beats, beats),
        "plp": f_measure(plp, beats),
        "downbeat": f_measure(grid.downbeats, downbeats),
    }


def leader_input(folder: Path, seconds: float) -> tuple[dict, str, np.ndarray]:
    """(metadata, leader stem name, its first ``seconds`` s): a track's performance input."""
    meta = yaml.safe_load((folder / "metadata.yaml").read_text())
    lead = next(s for s, i in meta["stems"].items() if i["role"] == "leader")
    return meta, lead, load_audio(folder / "stems" / f"{lead}.flac")[: int(seconds * SAMPLE_RATE)]


def beats_only(data: Path, tracks: list[str], seconds: float) -> dict:
    """Mean beat and downbeat F-measures (f) over the tracks' melody stems, and (keys with a
    ``mix_`` prefix) over their full mixes, where the melody the tracker follows is one voice
    among several."""
    scores, mixes = [], []
    for track in tracks:
        meta, _, audio = leader_input(data / track, seconds)
        end = len(audio) / SAMPLE_RATE
        beats, downbeats = ([b for b in meta[k] if b < end] for k in ("beats_s", "downbeats_s"))
        scores.append(beat_scores(audio, np.array(beats), np.array(downbeats)))
        mix = load_audio(data / track / "mix.flac")[: len(audio)]
        mixes.append(beat_scores(mix, np.array(beats), np.array(downbeats)))
    return {
        **{k: float(np.mean([b[k] for b in scores])) for k in scores[0]},
        **{f"mix_{k}": float(np.mean([b[k] for b in mixes])) for k in mixes[0]},
    }


def _mean(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(values)) if values else None


def summarise(rows: list[dict]) -> dict:
    out = {k: _mean(rows, k) for k in ("consonance", "in_key", "changes_per_s")}
    gaps = [g for r in rows for name, g in r["gap_lu"].items() if name != r.get("drums")]
    drum_gaps = [r["gap_lu"][r["drums"]] for r in rows if r.get("drums") in r["gap_lu"]]
    out["gap_lu_followers"] = (min(gaps), float(np.median(gaps)), max(gaps)) if gaps else None
    out["gap_lu_drums"] = (
        (min(drum_gaps), float(np.median(drum_gaps)), max(drum_gaps)) if drum_gaps else None
    )
    f1 = [r["drum_f1"] for r in rows if r.get("drum_f1") is not None]
    out["drum_f1"] = float(np.mean(f1)) if f1 else None
    out["drum_f1_chance"] = _mean(rows, "drum_f1_chance")
    return out


def analysed(audio: np.ndarray, rate: int) -> np.ndarray:
    """Mono at SAMPLE_RATE, where every measure here runs (outputs may come at 44.1 kHz)."""
    return resample(mono(audio), rate, SAMPLE_RATE)


def load_stems(folder: Path, names: list[str], n: int) -> dict[str, np.ndarray]:
    stems = {name: sf.read(folder / "stems" / f"{name}.wav", dtype="float32") for name in names}
    return {name: analysed(*stems[name])[:n] for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "data" / "corpus_big")
    parser.add_argument("--split", default="test")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--instruments", default="violin,cello,bass,drums")
    parser.add_argument("--previous", default=DEFAULT_PREVIOUS)
    parser.add_argument("--max-tracks", type=int, default=0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--beats-only", action="store_true", help="measure the beat tracker alone")
    args = parser.parse_args()
    names = args.instruments.split(",")
    drums_name = "drums" if "drums" in names else None
    tracks = json.loads((args.data / "splits.json").read_text())[args.split]
    tracks = tracks[: args.max_tracks] if args.max_tracks else tracks
    if args.beats_only:
        print(json.dumps({"beats": beats_only(args.data, tracks, args.seconds)}))
        return
    ensemble = Ensemble.from_pretrained()
    rng = np.random.default_rng(0)
    rows: dict[str, list[dict]] = {"shipped": [], "previous": [], "human": []}
    beats: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        inputs, cases = [], []
        for track in tracks:
            folder = args.data / track
            meta, lead, audio = leader_input(folder, args.seconds)
            n = len(audio)
            path = write_audio(work / f"{track}.wav", audio)
            inputs.append(path)
            cases.append((track, folder, meta, lead, audio, n))
        previous = previous_stems(args.previous, inputs, args.instruments, work)
        for (track, folder, meta, lead, audio, n), prev in zip(cases, previous, strict=True):
            key = song_key(folder, meta, n / SAMPLE_RATE)
            human = {s: load_audio(folder / "stems" / f"{s}.flac")[:n] for s in meta["stems"]}
            human_drums = next((s for s, i in meta["stems"].items() if i["is_drum"]), None)
            perf = ensemble.perform(audio, names)
            shipped = {k: analysed(v, perf.sample_rate) for k, v in perf.stems.items()}
            versions = {
                "shipped": (shipped, perf.leader, drums_name),
                "previous": (load_stems(prev, names, n), names[0], drums_name),
                "human": (human, lead, human_drums),
            }
            for version, (stems, leader, drums) in versions.items():
                row = measure(stems, leader, drums, key) | {"track": track, "drums": drums}
                if human_drums is not None and drums is not None:
                    row["drum_f1"], row["drum_f1_chance"] = drum_f1(
                        stems[drums], human[human_drums], rng
                    )
                rows[version].append(row)
            gt_beats = np.array([b for b in meta["beats_s"] if b < n / SAMPLE_RATE])
            gt_down = np.array([b for b in meta["downbeats_s"] if b < n / SAMPLE_RATE])
            beats.append(beat_scores(audio, gt_beats, gt_down))
            print(f"{track} {meta['kind']:8s} key {key.name:9s} tempo {perf.grid.tempo_bpm:5.1f}"
                  f" {perf.grid.meter}", flush=True)  # fmt: skip
    summary = {v: summarise(r) for v, r in rows.items()}
    summary["beats"] = {k: float(np.mean([b[k] for b in beats])) for k in beats[0]}
    summary["balance_full_mix"] = full_mix_balance(ensemble, names)
    print_summary(summary, len(tracks))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "rows": rows}, indent=2))


def full_mix_balance(ensemble: Ensemble, names: list[str]) -> dict:
    """Each follower's LU gap to the leader when the input is a dense full mix."""
    out = {}
    for example in ("folk_band_mix.wav", "quartet_mix_timgm.wav"):
        perf = ensemble.perform(load_audio(REPO / "examples" / example), names)
        stems = {k: analysed(v, perf.sample_rate) for k, v in perf.stems.items()}
        lead = lufs(stems[perf.leader])
        out[example] = {k: round(lead - lufs(v), 2) for k, v in stems.items()
                        if k != perf.leader}  # fmt: skip
    return out


def print_summary(summary: dict, n_tracks: int) -> None:
    print(f"\nheld-out tracks: {n_tracks}")
    print(f"{'':10s} {'consonance':>10s} {'in key':>7s} {'changes/s':>9s} {'drum F1':>8s} "
          f"{'chance':>7s}  follower gap LU (min/median/max)  drums gap LU")  # fmt: skip
    for version in ("shipped", "previous", "human"):
        s = summary[version]

        def f(v: float | None, spec: str = ".3f") -> str:
            return "-" if v is None else format(v, spec)

        gap = s["gap_lu_followers"]
        drum_gap = s["gap_lu_drums"]
        drum_text = "-" if drum_gap is None else "/".join(format(g, ".1f") for g in drum_gap)
        print(f"{version:10s} {f(s['consonance']):>10s} {f(s['in_key']):>7s} "
              f"{f(s['changes_per_s'], '.2f'):>9s} {f(s['drum_f1']):>8s} "
              f"{f(s['drum_f1_chance']):>7s}  "
              f"{'-' if gap is None else '/'.join(format(g, '.1f') for g in gap):>20s}"
              f"  {drum_text}")  # fmt: skip
    b = summary["beats"]
    print(f"\nbeat F-measure (±70 ms): ensemble.rhythm {b['ensemble']:.3f}, librosa beat_track "
          f"{b['beat_track']:.3f}, librosa PLP {b['plp']:.3f}; downbeat F {b['downbeat']:.3f}")
    for example, gaps in summary["balance_full_mix"].items():
        print(f"full-mix input {example}: follower gaps to the leader (LU) {gaps}")


if __name__ == "__main__":
    main()
