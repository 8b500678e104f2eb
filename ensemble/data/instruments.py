"""Canonical instrument names shared by the renderer and the loaders.

Every stem carries one lower-case canonical name (violin, flute, bass, drums, ...): it is the key
that picks a specialist decoder, so names are coarse enough to pool data (all saxophones are one
instrument, all bass guitars another) but keep timbres apart that a decoder cannot share (double
bass vs. electric bass).
"""

from __future__ import annotations

# General MIDI program families, named as Slakh's `inst_class` names them (program // 8).
GM_CLASSES = (
    "Piano",
    "Chromatic Percussion",
    "Organ",
    "Guitar",
    "Bass",
    "Strings",
    "Strings (continued)",
    "Brass",
    "Reed",
    "Pipe",
    "Synth Lead",
    "Synth Pad",
    "Synth Effects",
    "Ethnic",
    "Percussive",
    "Sound Effects",
)
DRUM_CLASS = "Drums"

# Canonical names of single programs; programs not listed take their family's fallback below.
_PROGRAM_NAMES = {
    **dict.fromkeys(range(0, 4), "piano"),
    **dict.fromkeys(range(4, 6), "electric_piano"),
    6: "harpsichord",
    **dict.fromkeys(range(16, 21), "organ"),
    21: "accordion",
    22: "harmonica",
    23: "accordion",
    **dict.fromkeys(range(24, 26), "guitar"),
    **dict.fromkeys(range(26, 32), "electric_guitar"),
    40: "violin",
    41: "viola",
    42: "cello",
    43: "double_bass",
    46: "harp",
    47: "timpani",
    56: "trumpet",
    57: "trombone",
    58: "tuba",
    59: "trumpet",
    60: "horn",
    **dict.fromkeys(range(64, 68), "saxophone"),
    68: "oboe",
    69: "english_horn",
    70: "bassoon",
    71: "clarinet",
    72: "piccolo",
    73: "flute",
    74: "recorder",
}
_FAMILY_NAMES = (
    "piano",
    "chromatic_percussion",
    "organ",
    "guitar",
    "bass",
    "strings",
    "string_ensemble",
    "brass",
    "reed",
    "pipe",
    "synth_lead",
    "synth_pad",
    "synth_effects",
    "ethnic",
    "percussive",
    "sound_effects",
)

# URMP's file-name abbreviations (Li et al., 2018).
URMP_INSTRUMENTS = {
    "vn": "violin",
    "va": "viola",
    "vc": "cello",
    "db": "double_bass",
    "fl": "flute",
    "ob": "oboe",
    "cl": "clarinet",
    "sax": "saxophone",
    "bn": "bassoon",
    "tpt": "trumpet",
    "hn": "horn",
    "tbn": "trombone",
    "tba": "tuba",
}

# Canonical name -> a representative GM program (for URMP stems and symbolic parts).
CANONICAL_PROGRAMS = {
    "violin": 40,
    "viola": 41,
    "cello": 42,
    "double_bass": 43,
    "flute": 73,
    "piccolo": 72,
    "oboe": 68,
    "english_horn": 69,
    "clarinet": 71,
    "bassoon": 70,
    "saxophone": 65,
    "horn": 60,
    "trumpet": 56,
    "trombone": 57,
    "tuba": 58,
    "bass": 33,
    "guitar": 24,
    "piano": 0,
    "organ": 19,
    "accordion": 21,
}


def gm_instrument(program: int, is_drum: bool = False) -> tuple[str, str]:
    """Canonical name and Slakh `inst_class` of a GM program (0..127); drums ignore the program."""
    if is_drum:
        return "drums", DRUM_CLASS
    if not 0 <= program <= 127:
        raise ValueError(f"GM program {program} is outside 0..127")
    family = program // 8
    if family == 4:
        return "bass", GM_CLASSES[family]
    return _PROGRAM_NAMES.get(program, _FAMILY_NAMES[family]), GM_CLASSES[family]


def program_for(name: str) -> int:
    """A GM program for a canonical name (0 = piano when the name has no GM counterpart)."""
    return CANONICAL_PROGRAMS.get(name, 0)


# Words in part names (scores, file names) -> canonical names; checked in order.
_NAME_WORDS = (
    ("violoncello", "cello"),
    ("contrabass", "double_bass"),
    ("double bass", "double_bass"),
    ("english horn", "english_horn"),
    ("cor anglais", "english_horn"),
    ("french horn", "horn"),
    ("sax", "saxophone"),
    ("fiddle", "violin"),
    *((name.replace("_", " "), name) for name in CANONICAL_PROGRAMS),
    ("soprano", "voice"),
    ("alto", "voice"),
    ("tenor", "voice"),
    ("voice", "voice"),
)


def canonical_from_text(text: str) -> str | None:
    """Canonical instrument named in free text such as a score's part name ("Violin I" ->
    violin, "Violoncello" -> cello, "Soprano" -> voice), or None."""
    lowered = text.lower()
    return next((name for word, name in _NAME_WORDS if word in lowered), None)
