"""omniforge.audio.codec against the real bundled ffmpeg: round trips, errors, streaming."""

from __future__ import annotations

import io
import struct
import subprocess
import threading
import time
import wave

import numpy as np
import pytest

from omniforge.audio import codec
from omniforge.audio.codec import PCM_SAMPLE_RATE, SUPPORTED_SPEECH_FORMATS, decode, encode, encode_stream
from omniforge.errors import InvalidRequestError, UnsupportedMediaError

SR = 22_050  # Piper's rate: every format but wav and pcm-at-24k goes through resampling somewhere
COMPRESSED = ("mp3", "opus", "aac", "flac")


def tone(seconds: float, freq: float = 440.0, sr: int = SR) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (np.sin(2 * np.pi * freq * t) * 12_000).astype(np.int16)


def assert_duration(audio: np.ndarray, seconds: float, sr: int = 16_000) -> None:
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) / sr - seconds) <= 0.05 * seconds, f"{len(audio) / sr:.3f} s, expected {seconds} s"
    assert float(np.sqrt(np.mean(audio**2))) > 0.05  # a tone, not silence


def ffmpeg_make(args: list[str]) -> bytes:
    """A file made by ffmpeg itself (containers our encoder does not write)."""
    cmd = [codec.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", *args, "pipe:1"]
    return subprocess.run(cmd, capture_output=True, check=True).stdout


# -- whole-file round trips ----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["wav", *COMPRESSED])
def test_encode_decode_round_trip(fmt: str) -> None:
    data = encode(tone(2.5), SR, fmt)
    assert data
    assert_duration(decode(data), 2.5)  # ADTS keeps AAC's ~80 ms of encoder delay: 3% of 2.5 s


def test_decode_at_another_rate() -> None:
    assert_duration(decode(encode(tone(1.0), SR, "flac"), sample_rate=8000), 1.0, sr=8000)


def test_wav_is_plain_stdlib_wav() -> None:
    data = encode(tone(0.5), SR, "wav")
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, SR)
        assert w.getnframes() == int(SR * 0.5)


def test_pcm_is_raw_24khz_s16le() -> None:
    data = encode(tone(1.0), SR, "pcm")
    assert abs(len(data) / 2 / PCM_SAMPLE_RATE - 1.0) < 0.01  # resampled from 22.05 kHz
    samples = np.frombuffer(data, dtype="<i2")
    assert np.abs(samples).max() > 10_000
    native = tone(1.0, sr=PCM_SAMPLE_RATE)
    assert encode(native, PCM_SAMPLE_RATE, "pcm") == native.astype("<i2").tobytes()  # no resampling at 24 kHz


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("m4a, index at the end", ["-f", "lavfi", "-i", "sine=f=440:d=1.5", "-c:a", "aac", "-f", "mp4"]),
        ("webm opus", ["-f", "lavfi", "-i", "sine=f=440:d=1.5", "-c:a", "libopus", "-f", "webm"]),
        ("ogg vorbis", ["-f", "lavfi", "-i", "sine=f=440:d=1.5", "-c:a", "libvorbis", "-f", "ogg"]),
    ],
)
def test_decode_other_containers(name: str, args: list[str], tmp_path) -> None:
    if "mp4" in args:  # the mp4 muxer needs a seekable output: write a file, then read it
        out = tmp_path / "a.m4a"
        subprocess.run([codec.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", *args[:-2], str(out)], check=True)
        data = out.read_bytes()
    else:
        data = ffmpeg_make(args)
    assert_duration(decode(data), 1.5)


def test_decode_takes_the_audio_of_a_video() -> None:
    data = ffmpeg_make(
        ["-f", "lavfi", "-i", "testsrc=d=1:s=32x32", "-f", "lavfi", "-i", "sine=d=1", "-c:v", "mpeg4", "-f", "matroska"]
    )
    assert_duration(decode(data), 1.0)


# -- decode errors -------------------------------------------------------------------------------


def test_decode_empty_input() -> None:
    with pytest.raises(UnsupportedMediaError) as info:
        decode(b"")
    assert info.value.param == "file" and "empty" in info.value.message


@pytest.mark.parametrize("data", [b"hello, this is not audio at all" * 10, bytes(range(256)) * 8])
def test_decode_corrupt_input(data: bytes) -> None:
    with pytest.raises(UnsupportedMediaError) as info:
        decode(data)
    assert info.value.param == "file"
    assert info.value.message.startswith("could not decode the audio file: ")
    assert "\n" not in info.value.message


def test_decode_image_has_no_audio_stream() -> None:
    png = ffmpeg_make(["-f", "lavfi", "-i", "testsrc=d=1:s=32x32", "-frames:v", "1", "-c:v", "png", "-f", "image2pipe"])
    with pytest.raises(UnsupportedMediaError, match="no audio stream"):
        decode(png)


def test_decode_zero_length_audio() -> None:
    with pytest.raises(UnsupportedMediaError, match="no audio samples") as info:
        decode(encode(np.zeros(0, dtype=np.int16), SR, "wav"))
    assert info.value.param == "file"


# -- encode arguments ----------------------------------------------------------------------------


def test_content_types() -> None:
    assert {f: codec.content_type(f) for f in SUPPORTED_SPEECH_FORMATS} == {
        "mp3": "audio/mpeg",
        "opus": "audio/ogg",
        "aac": "audio/aac",
        "flac": "audio/flac",
        "wav": "audio/wav",
        "pcm": "audio/pcm",
    }


def test_unknown_format_is_rejected_early() -> None:
    with pytest.raises(InvalidRequestError) as info:
        encode_stream(iter([]), SR, "ogg")  # raised on the call, before any iteration
    assert info.value.param == "response_format" and "mp3" in info.value.message
    with pytest.raises(InvalidRequestError):
        encode(tone(0.1), SR, "m4a")


def test_encode_wants_mono_int16() -> None:
    with pytest.raises(ValueError, match="int16"):
        encode(np.zeros(100, dtype=np.float32), SR, "wav")
    with pytest.raises(ValueError, match="mono"):
        encode(np.zeros((100, 2), dtype=np.int16), SR, "wav")


# -- streaming -----------------------------------------------------------------------------------


def sentences() -> list[np.ndarray]:
    return [tone(0.6, 330), tone(0.9, 440), tone(0.5, 550)]


@pytest.mark.parametrize("fmt", SUPPORTED_SPEECH_FORMATS)
def test_stream_makes_a_valid_file(fmt: str) -> None:
    data = b"".join(encode_stream(iter(sentences()), SR, fmt))
    if fmt == "pcm":
        assert abs(len(data) / 2 / PCM_SAMPLE_RATE - 2.0) < 0.02
    else:
        assert_duration(decode(data), 2.0)


def test_stream_wav_header_has_unknown_length() -> None:
    stream = encode_stream(iter(sentences()), SR, "wav")
    header = next(stream)
    assert len(header) == 44 and header[:4] == b"RIFF" and header[8:12] == b"WAVE"
    assert struct.unpack("<I", header[4:8])[0] == 0xFFFFFFFF
    assert struct.unpack("<I", header[40:44])[0] == 0xFFFFFFFF
    assert struct.unpack("<I", header[24:28])[0] == SR
    assert len(b"".join(stream)) == sum(len(c) for c in sentences()) * 2


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "pcm"])
def test_stream_yields_audio_before_the_input_ends(fmt: str) -> None:
    """Most of the first sentence is playable while the second one is still being made."""
    released = threading.Event()

    def slow_sentences():
        yield tone(1.0)
        released.wait(20)
        yield tone(1.0)

    early: list[bytes] = []
    late: list[bytes] = []

    def consume() -> None:
        for block in encode_stream(slow_sentences(), SR, fmt):
            (late if released.is_set() else early).append(block)

    consumer = threading.Thread(target=consume)
    consumer.start()
    time.sleep(1.0)  # the "synthesis" of sentence two takes a while
    released.set()
    consumer.join(30)
    head = b"".join(early)
    if fmt == "pcm":
        assert len(head) / 2 / PCM_SAMPLE_RATE > 0.6
    else:
        assert len(decode(head)) / 16_000 > 0.6
    whole = head + b"".join(late)
    assert_duration(decode_pcm(whole) if fmt == "pcm" else decode(whole), 2.0)


def decode_pcm(data: bytes) -> np.ndarray:
    """Raw 24 kHz pcm as float32 at 16 kHz (linear interpolation is plenty for a length check)."""
    audio = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768
    return np.interp(np.arange(0, len(audio), 1.5), np.arange(len(audio)), audio).astype(np.float32)


@pytest.mark.parametrize("fmt", ["mp3", "wav"])
def test_stream_closed_early_stops_the_producer(fmt: str) -> None:
    closed = threading.Event()

    def endless():
        try:
            while True:
                yield tone(0.2)
        finally:
            closed.set()

    stream = encode_stream(endless(), SR, fmt)
    assert next(stream) and next(stream)  # wav: past the header, so the producer has started
    stream.close()
    assert closed.wait(10), "the chunk generator was not closed"


def test_stream_reraises_a_producer_error() -> None:
    def broken():
        yield tone(0.3)
        raise InvalidRequestError("synthesis failed", param="input")

    with pytest.raises(InvalidRequestError, match="synthesis failed"):
        b"".join(encode_stream(broken(), SR, "mp3"))
