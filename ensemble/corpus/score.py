"""music21 scores -> plain note lists, bars, tempo marks and chord symbols.

Everything downstream works on `ScoreData` (times in quarter notes from the piece start), so the
arrangers never touch music21 objects and music21 is imported only here and in `sources`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from ensemble.corpus.arrangement import Note

DEFAULT_LEVEL = 0.55  # music21's volume scalar for "mf": the level of parts without dynamics
# One-note accents: they lift the note they sit on and do not change the running dynamic.
ACCENT_MARKS = frozenset({"sf", "sfz", "sff", "sffz", "sfp", "fz", "rf", "rfz", "fp"})
CHORD_FIGURE = re.compile(r"^[A-G][#b-]?")


class UnusableScore(ValueError):
    """A score the renderer cannot arrange (wrong number of parts, no meter, too few notes)."""


@dataclass(frozen=True)
class Bar:
    """One measure: where it starts, how long it is and its meter's beat grid."""

    start: float  # quarter notes
    length: float  # actual length (a pickup bar is shorter than `full`)
    full: float  # nominal bar length of its time signature
    beat: float  # beat length (1.5 for compound meters)

    @property
    def n_beats(self) -> int:
        return max(1, round(self.full / self.beat))

    @property
    def is_pickup(self) -> bool:
        return self.length < self.full - 1e-6


@dataclass(frozen=True)
class ChordSpan:
    """A chord held over [start, end) quarter notes."""

    start: float
    end: float
    root: int  # pitch class 0..11
    pitch_classes: tuple[int, ...]  # root first


@dataclass
class ScoreData:
    """A parsed score reduced to what the arrangers need."""

    title: str
    part_names: list[str]
    parts: list[list[Note]]  # velocity = 127 x dynamic level, refined by `arrangement`
    bars: list[Bar]
    length: float  # quarter notes
    tempo: float | None  # quarter notes per minute from the first metronome mark
    meter: str  # the first time signature, e.g. "6/8"
    chords: list[ChordSpan] = field(default_factory=list)  # from chord symbols, if any

    def excerpt(self, first_bar: int, max_length: float) -> ScoreData:
        """Bars from `first_bar` that fit in `max_length` quarter notes, shifted to start at 0."""
        bars = self.bars[first_bar:]
        if not bars:
            raise UnusableScore("the excerpt starts after the last bar")
        start = bars[0].start
        kept = [b for b in bars if b.start + b.length - start <= max_length + 1e-6] or bars[:1]
        end = min(kept[-1].start + kept[-1].length, start + max_length)

        def clip(notes: list[Note]) -> list[Note]:
            out = []
            for n in notes:
                if start - 1e-6 <= n.start < end:
                    duration = min(n.duration, end - n.start)
                    out.append(replace(n, start=n.start - start, duration=duration))
            return out

        chords = [
            replace(c, start=max(c.start, start) - start, end=min(c.end, end) - start)
            for c in self.chords
            if c.end > start and c.start < end
        ]
        return ScoreData(
            title=self.title,
            part_names=self.part_names,
            parts=[clip(p) for p in self.parts],
            bars=[replace(b, start=b.start - start) for b in kept],
            length=end - start,
            tempo=self.tempo,
            meter=self.meter,
            chords=chords,
        )


def _levels(part) -> tuple[list[tuple[float, float]], dict[float, float]]:
    """Running dynamic levels [(offset, scalar)] and one-note accents {offset: scalar}."""
    running: list[tuple[float, float]] = []
    accents: dict[float, float] = {}
    for dyn in part.flatten().getElementsByClass("Dynamic"):
        try:
            scalar = float(dyn.volumeScalar)
        except (TypeError, ValueError):
            continue  # unknown dynamic words carry no level
        offset = float(dyn.offset)
        if str(dyn.value) in ACCENT_MARKS:
            accents[offset] = scalar
        else:
            running.append((offset, scalar))
    return running, accents


def _part_notes(part) -> list[Note]:
    """Notes of a music21 Part with tied notes merged (music21's own stripTies takes ~15 s on
    a long quartet part; this pass is linear)."""
    running, accents = _levels(part)
    notes: list[Note] = []
    tied: dict[int, int] = {}  # pitch -> index in `notes` of the note its tie continues
    level_index, level = 0, DEFAULT_LEVEL
    for element in part.flatten().notes:  # notes and chords in offset order
        duration = float(element.quarterLength)
        if duration <= 0:  # grace notes have no written duration
            continue
        offset = float(element.offset)
        while level_index < len(running) and running[level_index][0] <= offset + 1e-6:
            level = running[level_index][1]
            level_index += 1
        velocity = round(127 * accents.get(offset, level))
        for sounding in element.notes if element.isChord else (element,):
            pitch = int(sounding.pitch.midi)
            tie = sounding.tie.type if sounding.tie is not None else None
            held = notes[tied[pitch]] if pitch in tied else None
            # a tied note continues into the next same-pitch note that starts where it ends;
            # the closing note's "stop" is often missing from MusicXML exports
            if held is not None and abs(held.start + held.duration - offset) < 1e-6:
                notes[tied[pitch]] = replace(held, duration=offset + duration - held.start)
            else:
                notes.append(Note(offset, duration, pitch, velocity))
                tied[pitch] = len(notes) - 1
            if tie not in ("start", "continue"):
                tied.pop(pitch, None)
    return notes


def _bars(part) -> list[Bar]:
    bars: list[Bar] = []
    ts = None
    for measure in part.getElementsByClass("Measure"):
        if measure.timeSignature is not None:
            ts = measure.timeSignature
        if ts is None:
            raise UnusableScore("the score has no time signature")
        length = float(measure.duration.quarterLength)
        if length <= 0:
            continue
        bars.append(
            Bar(
                start=float(measure.offset),
                length=length,
                full=float(ts.barDuration.quarterLength),
                beat=float(ts.beatDuration.quarterLength),
            )
        )
    if not bars:
        raise UnusableScore("the score has no measures")
    return bars


def _chords(score, length: float) -> list[ChordSpan]:
    """Chord symbols as spans; text that is not a chord (fingerings, dynamics) is ignored."""
    from music21 import harmony

    found: list[tuple[float, int, tuple[int, ...]]] = []
    for symbol in score.recurse().getElementsByClass(harmony.ChordSymbol):
        if not CHORD_FIGURE.match(symbol.figure or "") or symbol.root() is None:
            continue
        pcs = tuple(dict.fromkeys(p.pitchClass for p in symbol.pitches))
        if len(pcs) < 3:
            continue
        root = symbol.root().pitchClass
        pcs = (root, *[pc for pc in pcs if pc != root])
        found.append((float(symbol.getOffsetInHierarchy(score)), root, pcs))
    found.sort()
    return [
        ChordSpan(start, found[i + 1][0] if i + 1 < len(found) else length, root, pcs)
        for i, (start, root, pcs) in enumerate(found)
    ]


def _tempo(score) -> float | None:
    for mark in score.recurse().getElementsByClass("MetronomeMark"):
        bpm = mark.getQuarterBPM()
        if bpm:
            return float(bpm)
    return None


def _expanded(score):
    """The score with repeats written out, or as written when music21's expansion fails or
    goes wrong (nested endings can make it repeat sections many times)."""
    try:
        expanded = score.expandRepeats()
    except Exception:  # music21 raises many exception types on odd repeat marks
        return score
    if score.highestTime < expanded.highestTime <= 2.5 * score.highestTime:
        return expanded
    return score


def score_data(score, *, expand_repeats: bool = False, require_meter: bool = True) -> ScoreData:
    """Reduce a music21 Score to `ScoreData`.

    Args:
        score: a parsed music21 Score.
        expand_repeats: write out repeats (folk tunes).
        require_meter: raise UnusableScore for a score without a time signature (arrangers need
            bars); otherwise such a score has no bars and an empty meter.
    """
    if expand_repeats:
        score = _expanded(score)
    parts = list(score.parts)
    if not parts:
        raise UnusableScore("the score has no parts")
    length = float(score.highestTime)
    signatures = parts[0].recurse().getElementsByClass("TimeSignature")
    if not signatures and require_meter:
        raise UnusableScore("the score has no time signature")
    title = (score.metadata.title if score.metadata else None) or ""
    return ScoreData(
        title=str(title),
        part_names=[str(p.partName or f"part {i + 1}") for i, p in enumerate(parts)],
        parts=[_part_notes(p) for p in parts],
        bars=_bars(parts[0]) if signatures else [],
        length=length,
        tempo=_tempo(score),
        meter=str(signatures[0].ratioString) if signatures else "",
        chords=_chords(score, length),
    )
