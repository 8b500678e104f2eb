"""Project-wide constants: one sample rate and one frame rate for every module.

100 frames/s (hop 160 at 16 kHz) rather than DDSP's 250: the GRU decoders, the conductor and the
RAG features all run per frame, so 2.5x fewer frames is 2.5x less CPU for the same audio, and
10 ms frames still resolve note onsets and vibrato.
"""

SAMPLE_RATE = 16_000
HOP_LENGTH = 160
FRAME_RATE = SAMPLE_RATE // HOP_LENGTH  # 100 frames per second

MIN_SECONDS = 0.5  # shorter input cannot be analysed (pitch tracker + chroma need context)
MAX_SECONDS = 120.0  # longer uploads are refused unless the caller trims them
SILENCE_DBFS = -70.0  # peak level below which an input counts as silent
