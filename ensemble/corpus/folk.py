"""Folk tune -> band: lead melody, bass line from the chord roots, chord comping and drums.

The chords are the tune's own chord symbols when it has them (Nottingham), otherwise fitted from
the melody (`ensemble.corpus.harmony`). Short tunes are played up to three times so a track runs
20-60 s, long ones are cut at a bar line.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ensemble.corpus.arrangement import (
    Arrangement,
    Note,
    Part,
    choose_transposition,
    expression_curve,
    fit_range,
    monophonic,
    perform,
    transpose,
)
from ensemble.corpus.drums import DrumStyle, drum_part
from ensemble.corpus.harmony import estimate_key, fit_chords
from ensemble.corpus.score import Bar, ChordSpan, ScoreData, UnusableScore
from ensemble.corpus.sources import PieceRef
from ensemble.corpus.voices import FOLK_BASSES, FOLK_COMPING, FOLK_LEADS, VOICES, Voice

MIN_NOTES = 12
MAX_REPEATS = 3
COMP_LOW, COMP_HIGH = 52, 74  # comping voicings live between E3 and D5, under the melody


def _repeat(data: ScoreData, times: int) -> ScoreData:
    """The tune played `times` times back to back (chords and bars shifted along)."""
    if times <= 1:
        return data
    shifts = [k * data.length for k in range(times)]
    return replace(
        data,
        parts=[
            [replace(n, start=n.start + s) for s in shifts for n in part] for part in data.parts
        ],
        bars=[replace(b, start=b.start + s) for s in shifts for b in data.bars],
        chords=[replace(c, start=c.start + s, end=c.end + s) for s in shifts for c in data.chords],
        length=data.length * times,
    )


def _beat_positions(span: ChordSpan, beat: float) -> list[float]:
    count = max(1, round((span.end - span.start) / beat))
    return [span.start + k * beat for k in range(count) if span.start + k * beat < span.end - 1e-6]


def bass_line(chords: list[ChordSpan], beat: float, style: str, voice: Voice) -> list[Note]:
    """Bass notes from chord roots: one per chord ("root"), root then fifth at half-chord
    ("halves"), or alternating root and fifth on every beat ("beats")."""
    notes: list[Note] = []
    previous = (voice.low + voice.high) // 2 - 5
    for span in chords:
        # the root in the octave nearest the previous bass note: smooth, walking-free motion
        root = min(
            (p for p in range(voice.low, voice.high + 1) if p % 12 == span.root),
            key=lambda p: abs(p - previous),
        )
        fifth = root + 7 if root + 7 <= voice.high else root - 5
        beats = _beat_positions(span, beat)
        if style == "beats":
            onsets = beats
        elif style == "halves" and len(beats) >= 2 and len(beats) % 2 == 0:
            onsets = [beats[0], beats[len(beats) // 2]]
        else:
            onsets = beats[:1]
        for k, onset in enumerate(onsets):
            end = onsets[k + 1] if k + 1 < len(onsets) else span.end
            notes.append(Note(onset, end - onset, root if k % 2 == 0 else fifth, 90))
        previous = root
    return notes


def _voicing(pitch_classes: tuple[int, ...], centre: float) -> list[int]:
    """A close-position chord in the comping register whose centre is nearest `centre`."""
    best: list[int] = []
    for inversion in range(len(pitch_classes)):
        order = pitch_classes[inversion:] + pitch_classes[:inversion]
        for base in range(COMP_LOW, COMP_LOW + 12):
            if base % 12 != order[0]:
                continue
            chord = [base]
            for pc in order[1:]:
                chord.append(chord[-1] + (pc - chord[-1]) % 12)
            if chord[-1] <= COMP_HIGH and (
                not best or abs(np.mean(chord) - centre) < abs(np.mean(best) - centre)
            ):
                best = chord
    return best


def comping(chords: list[ChordSpan], beat: float, style: str, strum: float) -> list[Note]:
    """Chord hits: every beat ("strum"), every beat but the first ("offbeat", the oom-pah a
    bass answers) or one held chord per span ("sustain"). `strum` staggers the chord notes
    (quarter notes between strings) for guitars."""
    notes: list[Note] = []
    centre = 62.0
    for span in chords:
        voicing = _voicing(span.pitch_classes[:4], centre)
        centre = float(np.mean(voicing))
        beats = _beat_positions(span, beat)
        if style == "sustain":
            hits = [(span.start, span.end - span.start)]
        elif style == "offbeat" and len(beats) > 1:
            hits = [(b, beat) for b in beats[1:]]
        else:
            hits = [(b, beat) for b in beats]
        for onset, length in hits:
            for k, pitch in enumerate(voicing):
                delay = k * strum
                notes.append(Note(onset + delay, max(length - delay, 0.05), pitch, 75))
    return notes


def _tempo(rng: np.random.Generator, beat: float) -> float:
    """Quarter notes per minute for a beat of `beat` quarter notes (dance tempos per beat)."""
    if abs(beat - 1.5) < 1e-6:
        beats_per_minute = rng.uniform(66, 104)
    elif beat >= 2:
        beats_per_minute = rng.uniform(60, 92)
    else:
        beats_per_minute = rng.uniform(88, 132)
    return float(beats_per_minute * beat)


def _main_beat(bars: list[Bar]) -> float:
    values, counts = np.unique([b.beat for b in bars], return_counts=True)
    return float(values[np.argmax(counts)])


def arrange_folk(
    ref: PieceRef, data: ScoreData, rng: np.random.Generator, max_seconds: float
) -> Arrangement:
    """A four-stem band arrangement (lead, bass, comping, drums) of a single-line tune."""
    data, beat, bpm = _tune_at_length(data, rng, max_seconds)
    lead = VOICES[str(rng.choice(FOLK_LEADS))]
    shift = choose_transposition(rng, [(data.parts[0], lead)])
    melody = fit_range(transpose(data.parts[0], shift), lead)
    chords = _transposed_chords(data, shift) if _has_chord_symbols(data) else fit_chords(
        melody, data.bars, estimate_key(melody))
    gain = float(rng.uniform(0.8, 1.15))
    backing = _Backing.draw(rng, beat, bpm)  # drawn before any note, as the seeds expect
    lead_part = Part(
        "lead",
        lead,
        perform(
            melody,
            rng,
            gain=gain,
            offset=8,
            downbeats=_downbeats(data),
            articulation=float(rng.uniform(0.8, 0.97)),
        ),
        role="leader",
        expression=expression_curve(rng, data.length, 2 * data.bars[-1].full),
    )
    parts = [lead_part, *backing.parts(chords, data, rng, gain)]
    return Arrangement.of("folk", ref, data, bpm, shift, parts)


def _tune_at_length(data: ScoreData, rng: np.random.Generator, max_seconds: float
                    ) -> tuple[ScoreData, float, float]:
    """The tune's melody alone, cut at `max_seconds` or repeated towards it; its beat (quarter
    notes) and a drawn tempo (quarter notes per minute)."""
    melody = monophonic(data.parts[0])
    if len(melody) < MIN_NOTES:
        raise UnusableScore(f"the tune has only {len(melody)} notes")
    data = replace(data, parts=[melody])
    beat = _main_beat(data.bars)
    bpm = _tempo(rng, beat)
    tune_seconds = data.length * 60.0 / bpm
    if tune_seconds > max_seconds:
        return data.excerpt(0, max_seconds * bpm / 60.0), beat, bpm
    return _repeat(data, min(MAX_REPEATS, int(max_seconds // tune_seconds))), beat, bpm


def _has_chord_symbols(data: ScoreData) -> bool:
    """Chord symbols covering more than half the tune (else the chords are fitted)."""
    return bool(data.chords) and sum(c.end - c.start for c in data.chords) > 0.5 * data.length


def _transposed_chords(data: ScoreData, shift: int) -> list[ChordSpan]:
    return [
        replace(
            c,
            root=(c.root + shift) % 12,
            pitch_classes=tuple((p + shift) % 12 for p in c.pitch_classes),
        )
        for c in data.chords
    ]


def _downbeats(data: ScoreData) -> np.ndarray:
    return np.array([b.start for b in data.bars])


@dataclass(frozen=True)
class _Backing:
    """The rhythm section's voices and styles."""

    beat: float
    bass: Voice
    bass_style: str
    comp: Voice
    comp_style: str
    strum: float

    @classmethod
    def draw(cls, rng: np.random.Generator, beat: float, bpm: float) -> _Backing:
        bass = VOICES[str(rng.choice(FOLK_BASSES))]
        comp_name = str(rng.choice(FOLK_COMPING))
        compound = abs(beat - 1.5) < 1e-6
        bass_styles = ["root", "halves"] if compound else ["root", "halves", "beats"]
        bass_style = str(rng.choice(bass_styles))
        guitar = "guitar" in comp_name
        comp_styles = ["strum", "offbeat"] if guitar else ["sustain", "offbeat", "strum"]
        comp_style = str(rng.choice(comp_styles))
        strum = 0.03 * bpm / 120.0 if guitar else 0.0  # ~15 ms between strings
        return cls(beat, bass, bass_style, VOICES[comp_name], comp_style, strum)

    def parts(self, chords: list[ChordSpan], data: ScoreData, rng: np.random.Generator,
              gain: float) -> list[Part]:
        """Bass, comping and drums, performed in that order (the order the seeds expect)."""
        bass = Part(
            "bass",
            self.bass,
            perform(
                bass_line(chords, self.beat, self.bass_style, self.bass),
                rng,
                gain=gain,
                downbeats=_downbeats(data),
                articulation=0.9,
            ),
        )
        comp = Part(
            "comping",
            self.comp,
            perform(
                comping(chords, self.beat, self.comp_style, self.strum),
                rng,
                gain=gain,
                offset=-12,
                articulation=0.85,
            ),
            expression=expression_curve(rng, data.length, 4 * data.bars[-1].full, low=90),
        )
        drums = Part("drums", VOICES["drums"], drum_part(data.bars, rng, DrumStyle.draw(rng), gain))
        return [bass, comp, drums]
