"""Project-wide constants: one sample rate and one frame rate for every module.

100 frames/s (hop 160 at 16 kHz) rather than DDSP's 250: the GRU decoders, the conductor and the
RAG features all run per frame, so 2.5x fewer frames is 2.5x less CPU for the same audio, and
10 ms frames still resolve note onsets and vibrato.
"""

SAMPLE_RATE = 16_000
HOP_LENGTH = 160
FRAME_RATE = SAMPLE_RATE // HOP_LENGTH  # 100 frames per second
# Audio that leaves Ensemble (decoders, mixes, continuations) may run at a higher rate than the
# analysis above; the frame grid is shared, so any such rate is a multiple of FRAME_RATE.
HIFI_SAMPLE_RATE = 44_100
AUDIO_RATES = (16_000, 44_100, 48_000)

MIN_SECONDS = 0.5  # shorter input cannot be analysed (pitch tracker + chroma need context)
MAX_SECONDS = 120.0  # longer uploads are refused unless the caller trims them
SILENCE_DBFS = -70.0  # peak level below which an input counts as silent
