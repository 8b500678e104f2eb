"""Instruments the renderer can assign, with GM programs and playable (sounding) MIDI ranges.

Ranges are the comfortable orchestral/band ranges, narrower than the soundfont's sample ranges,
so rendered stems sound like real players and stay inside what a specialist decoder should learn.
"""

from __future__ import annotations

from dataclasses import dataclass

from ensemble.data.instruments import gm_instrument


@dataclass(frozen=True)
class Voice:
    """An instrument choice for one part."""

    program: int  # GM program (ignored for drums)
    low: int  # lowest sounding MIDI pitch
    high: int  # highest sounding MIDI pitch
    is_drum: bool = False

    @property
    def name(self) -> str:
        return gm_instrument(self.program, self.is_drum)[0]

    @property
    def inst_class(self) -> str:
        return gm_instrument(self.program, self.is_drum)[1]


VOICES = {
    "violin": Voice(40, 55, 100),
    "viola": Voice(41, 48, 88),
    "cello": Voice(42, 36, 76),
    "double_bass": Voice(43, 28, 60),
    "flute": Voice(73, 60, 96),
    "oboe": Voice(68, 58, 91),
    "clarinet": Voice(71, 50, 91),
    "bassoon": Voice(70, 34, 75),
    "horn": Voice(60, 41, 77),
    "trumpet": Voice(56, 54, 84),
    "trombone": Voice(57, 40, 72),
    "tuba": Voice(58, 28, 58),
    "saxophone": Voice(65, 49, 81),  # alto sax
    "accordion": Voice(21, 53, 89),
    "bass": Voice(33, 28, 55),  # fingered electric bass
    "acoustic_bass": Voice(32, 28, 55),
    "picked_bass": Voice(34, 28, 55),
    "nylon_guitar": Voice(24, 40, 79),
    "steel_guitar": Voice(25, 40, 79),
    "piano": Voice(0, 36, 96),
    "electric_piano": Voice(4, 36, 96),
    "drums": Voice(0, 0, 127, is_drum=True),
}

# Per-voice choices: chorale voices by register; band roles for the folk arrangement.
CHORALE_CHOICES = {
    "soprano": ("flute", "oboe", "clarinet", "violin", "trumpet"),
    "alto": ("violin", "viola", "clarinet", "horn", "oboe"),
    "tenor": ("viola", "horn", "cello", "bassoon", "clarinet", "trombone"),
    "bass": ("cello", "bassoon", "double_bass", "tuba", "trombone"),
}
# Whole-ensemble colours, used for some chorales instead of independent picks.
CHORALE_ENSEMBLES = (
    ("violin", "violin", "viola", "cello"),
    ("flute", "oboe", "clarinet", "bassoon"),
    ("trumpet", "horn", "trombone", "tuba"),
    ("oboe", "clarinet", "horn", "bassoon"),
)
QUARTET = ("violin", "violin", "viola", "cello")
FOLK_LEADS = ("flute", "violin", "clarinet", "trumpet", "oboe", "saxophone", "accordion")
FOLK_BASSES = ("bass", "acoustic_bass", "picked_bass")
FOLK_COMPING = ("nylon_guitar", "steel_guitar", "piano", "electric_piano")
