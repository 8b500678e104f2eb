"""The audio gate: every file a user can upload either loads or fails with a human sentence."""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ensemble.audio import ClippingWarning, load_audio, write_audio
from ensemble.config import MAX_SECONDS, MIN_SECONDS, SAMPLE_RATE
from ensemble.errors import AudioInputError
from tests.conftest import tone


@pytest.mark.parametrize(
    ("suffix", "subtype", "sr", "channels"),
    [
        (".wav", "PCM_16", 44_100, 2),
        (".wav", "PCM_24", 96_000, 1),
        (".wav", "FLOAT", 8_000, 1),
        (".wav", "PCM_U8", 22_050, 1),
        (".wav", "PCM_32", 48_000, 6),
        (".flac", "PCM_16", 32_000, 2),
        (".ogg", "VORBIS", 48_000, 2),
        (".mp3", "MPEG_LAYER_III", 44_100, 2),
    ],
)
def test_formats_rates_channels_become_mono_16k(
    tmp_path: Path, suffix: str, subtype: str, sr: int, channels: int
) -> None:
    mono = tone(440.0, 1.0, sr=sr)
    data = np.stack([mono] * channels, axis=1)
    path = tmp_path / f"in{suffix}"
    sf.write(path, data, sr, subtype=subtype)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - SAMPLE_RATE) < 0.01 * SAMPLE_RATE + 1200  # codecs may pad a frame
    spectrum = np.abs(np.fft.rfft(audio[2000:14000]))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / 12000
    assert abs(peak_hz - 440) < 5


def test_array_input_int16_and_channels_first() -> None:
    mono = tone(220.0, 1.0)
    stereo_int = (np.stack([mono, mono]) * 32767).astype(np.int16)  # (C, N) like librosa
    audio = load_audio((stereo_int, SAMPLE_RATE))
    assert audio.shape == (SAMPLE_RATE,)
    np.testing.assert_allclose(audio, mono, atol=1e-3)


def _message(source: object, **kwargs: object) -> str:
    with pytest.raises(AudioInputError) as info:
        load_audio(source, **kwargs)  # type: ignore[arg-type]
    return str(info.value)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    assert "empty" in _message(path)


def test_not_audio(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("these are my lyrics, not a recording\n" * 20)
    assert "not an audio file" in _message(path)


def test_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.flac"
    sf.write(path, tone(440.0, 2.0), SAMPLE_RATE)
    path.write_bytes(path.read_bytes()[:200])
    message = _message(path)
    assert "corrupt or truncated" in message or "contains no audio" in message


def test_missing_file(tmp_path: Path) -> None:
    assert "does not exist" in _message(tmp_path / "nope.wav")


def test_silent(tmp_path: Path) -> None:
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(SAMPLE_RATE * 2, np.float32), SAMPLE_RATE)
    assert "silent" in _message(path)


def test_too_short_names_minimum(tmp_path: Path) -> None:
    path = tmp_path / "blip.wav"
    sf.write(path, tone(440.0, MIN_SECONDS / 4), SAMPLE_RATE)
    assert f"{MIN_SECONDS:g} s" in _message(path)


def test_too_long_names_maximum_and_trim_works() -> None:
    long = np.tile(tone(330.0, 1.0), int(MAX_SECONDS) + 2)
    message = _message((long, SAMPLE_RATE))
    assert f"{MAX_SECONDS:g} s" in message and "trim" in message.lower()
    trimmed = load_audio((long, SAMPLE_RATE), trim=True)
    assert len(trimmed) == int(MAX_SECONDS * SAMPLE_RATE)


def test_nan_and_inf(tmp_path: Path) -> None:
    bad = tone(440.0, 1.0)
    bad[100] = np.nan
    assert "NaN" in _message((bad, SAMPLE_RATE))
    path = tmp_path / "inf.wav"
    bad[100] = np.inf
    sf.write(path, bad, SAMPLE_RATE, subtype="FLOAT")
    assert "infinite" in _message(path)


def test_clipped_input_is_accepted_with_warning() -> None:
    loud = np.clip(tone(440.0, 1.0) * 8, -1, 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        audio = load_audio((loud, SAMPLE_RATE))
    assert any(issubclass(w.category, ClippingWarning) for w in caught)
    assert np.max(np.abs(audio)) <= 1.0


def test_write_audio_round_trip(tmp_path: Path) -> None:
    signal = tone(440.0, 1.0)
    path = write_audio(tmp_path / "sub" / "out.wav", signal * 3)  # clipped on write, not wrapped
    back, sr = sf.read(path, dtype="float32")
    assert sr == SAMPLE_RATE and np.max(np.abs(back)) <= 1.0
    stereo = np.stack([signal, -0.5 * signal], axis=1)
    for suffix in (".wav", ".flac"):
        back, _ = sf.read(write_audio(tmp_path / f"stereo{suffix}", stereo), dtype="float32")
        assert back.shape == stereo.shape
        np.testing.assert_allclose(back, stereo, atol=1 / 32767)


def test_import_does_not_pull_gradio() -> None:
    code = "import sys, ensemble, ensemble.audio, ensemble.features; print('gradio' in sys.modules)"
    out = subprocess.run(
        [__import__("sys").executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
