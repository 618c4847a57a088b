"""Audio in and out: decode any common container to float32 samples, and encode int16 speech to
the formats OpenAI's speech endpoint serves, whole or streamed while it is being synthesized.

Everything but WAV goes through the ffmpeg binary bundled with imageio-ffmpeg (no system ffmpeg
needed), over pipes. WAV is written with the stdlib `wave` module. This module knows nothing
about models or HTTP: bytes and numpy arrays in, bytes and numpy arrays out.

Output formats (the decisions a client can notice):
    wav   16-bit mono at the model's own rate (Piper: 22.05 kHz). Streamed, the header carries
          0xFFFFFFFF sizes ("unknown length"), as streaming TTS servers do.
    pcm   raw signed 16-bit little-endian mono at 24 kHz, no header, exactly as OpenAI serves
          "pcm": audio at any other rate is resampled to 24 kHz (PCM_SAMPLE_RATE), because
          clients (the openai SDK's player among them) assume 24 kHz and would otherwise play
          22.05 kHz speech 9% too fast.
    mp3   MPEG-1/2 layer III, 64 kbit/s mono at the model's rate.
    opus  Opus in an Ogg container, 32 kbit/s at 48 kHz (Opus has no 22.05 kHz mode), in 100 ms
          Ogg pages so a stream does not hold back a whole second of audio.
    aac   AAC-LC in an ADTS stream, 64 kbit/s (an MP4 container needs a seekable output).
    flac  lossless; streamed, the STREAMINFO header has no total length (decoders accept that).
"""

from __future__ import annotations

import io
import re
import struct
import subprocess
import tempfile
import threading
import wave
from collections.abc import Iterable, Iterator
from functools import lru_cache

import numpy as np

from ..errors import InvalidRequestError, MissingDependencyError, OmniforgeError, UnsupportedMediaError

__all__ = [
    "CONTENT_TYPES",
    "PCM_SAMPLE_RATE",
    "SUPPORTED_SPEECH_FORMATS",
    "content_type",
    "decode",
    "encode",
    "encode_stream",
    "ffmpeg_exe",
    "wav_header",
]

SUPPORTED_SPEECH_FORMATS: tuple[str, ...] = ("mp3", "opus", "aac", "flac", "wav", "pcm")
CONTENT_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
PCM_SAMPLE_RATE = 24_000  # OpenAI's "pcm": 24 kHz, 16-bit signed little-endian, mono, no header
DECODE_TIMEOUT_S = 600.0  # a stuck ffmpeg must not hold a request forever
_UNKNOWN_SIZE = 0xFFFFFFFF  # WAV size fields of a stream whose length is not known yet

# ffmpeg output options per format (the input is always raw s16le mono on stdin).
_ENCODER_ARGS: dict[str, list[str]] = {
    "mp3": ["-c:a", "libmp3lame", "-b:a", "64k", "-f", "mp3"],
    "opus": ["-c:a", "libopus", "-b:a", "32k", "-ar", "48000", "-page_duration", "100000", "-f", "ogg"],
    "aac": ["-c:a", "aac", "-b:a", "64k", "-f", "adts"],
    "flac": ["-c:a", "flac", "-f", "flac"],
    "pcm": ["-c:a", "pcm_s16le", "-ar", str(PCM_SAMPLE_RATE), "-f", "s16le"],
}


@lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg."""
    try:
        import imageio_ffmpeg
    except ImportError as exc:
        raise MissingDependencyError("audio decoding and encoding need imageio-ffmpeg: pip install imageio-ffmpeg") from exc
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:  # the wheel for another platform, or a removed binary
        raise MissingDependencyError(f"imageio-ffmpeg has no usable ffmpeg binary: {exc}") from exc


def content_type(fmt: str) -> str:
    """The Content-Type of a speech response in `fmt`."""
    return CONTENT_TYPES[_check_format(fmt)]


# -- decoding ------------------------------------------------------------------------------------


def decode(data: bytes, sample_rate: int = 16_000) -> np.ndarray:
    """Decode an audio file of any common container (wav, mp3, flac, ogg/opus, m4a/aac, webm,
    the audio track of a video) to mono float32 samples in [-1, 1] at `sample_rate`.

    Raises UnsupportedMediaError(param="file") for empty, corrupt or non-audio input, and for a
    file that decodes to no samples at all.
    """
    if not data:
        raise UnsupportedMediaError("the audio file is empty", param="file")
    out_args = [
        *("-map", "0:a:0"),  # the first audio stream; a file without one fails here, clearly
        *("-ac", "1", "-ar", str(sample_rate)),
        *("-c:a", "pcm_f32le", "-f", "f32le", "pipe:1"),
    ]
    if data[4:8] == b"ftyp":
        # MP4/M4A/MOV keep their index (moov) wherever the writer put it, often after the audio:
        # reading those needs a seekable input, so this one family goes through a temp file.
        with tempfile.NamedTemporaryFile(prefix="omniforge-", suffix=".m4a") as f:
            f.write(data)
            f.flush()
            proc = _run_ffmpeg(["-nostdin", "-i", f.name, *out_args], None)
    else:
        proc = _run_ffmpeg(["-i", "pipe:0", *out_args], data)
    if proc.returncode != 0:
        raise UnsupportedMediaError(f"could not decode the audio file: {_summarize(proc.stderr)}", param="file")
    if len(proc.stdout) < 4:
        raise UnsupportedMediaError("the audio file contains no audio samples", param="file")
    return np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)  # a writable copy


def _run_ffmpeg(args: list[str], stdin: bytes | None) -> subprocess.CompletedProcess[bytes]:
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-threads", "1", *args]
    try:
        return subprocess.run(
            cmd,
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
            capture_output=True,
            timeout=DECODE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise UnsupportedMediaError(f"ffmpeg took over {DECODE_TIMEOUT_S:.0f} s on the audio file", param="file") from exc


_FFMPEG_PREFIX = re.compile(r"^\[[^\]]*@ 0x[0-9a-f]+\]\s*")


def _summarize(stderr: bytes) -> str:
    """ffmpeg's complaint in one readable line. ffmpeg names the cause first and then the
    consequences ("Error opening input files: ..."), so the first line is the one to keep."""
    text = stderr.decode("utf-8", "replace")
    if "matches no streams" in text:
        return "it contains no audio stream"
    lines = []
    for raw in text.splitlines():
        line = _FFMPEG_PREFIX.sub("", raw).strip().removeprefix("pipe:0: ")
        if line and not line.startswith("Last message repeated"):
            lines.append(line)
    if not lines:
        return "ffmpeg gave no reason"
    line = lines[0].removeprefix("Error opening input: ")
    return line if len(line) <= 200 else line[:197] + "..."


# -- encoding ------------------------------------------------------------------------------------


def _check_format(fmt: str) -> str:
    if fmt not in CONTENT_TYPES:
        raise InvalidRequestError(
            f"response_format {fmt!r} is not supported; choose one of {', '.join(SUPPORTED_SPEECH_FORMATS)}",
            param="response_format",
        )
    return fmt


def _check_rate(sample_rate: int) -> int:
    if not isinstance(sample_rate, int | np.integer) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, not {sample_rate!r}")
    return int(sample_rate)


def _as_int16(pcm: np.ndarray) -> np.ndarray:
    """Mono int16 samples as given; anything else is a caller's bug, not something to guess at."""
    arr = np.asarray(pcm)
    if arr.dtype != np.int16:
        raise ValueError(f"speech samples must be int16, not {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"speech samples must be mono (1-D), not shape {arr.shape}")
    return arr


def _le_bytes(pcm: np.ndarray) -> bytes:
    return _as_int16(pcm).astype("<i2", copy=False).tobytes()


def wav_header(sample_rate: int, data_bytes: int | None = None) -> bytes:
    """A 44-byte header of 16-bit mono WAV. `data_bytes=None` writes 0xFFFFFFFF sizes: a stream
    of unknown length, which players and ffmpeg read to the end of the data."""
    sample_rate = _check_rate(sample_rate)
    data_size = _UNKNOWN_SIZE if data_bytes is None else data_bytes
    riff_size = _UNKNOWN_SIZE if data_bytes is None else 36 + data_bytes
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        *(b"RIFF", riff_size, b"WAVE"),
        *(b"fmt ", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16),  # PCM, mono, 16 bits
        *(b"data", data_size),
    )


def finish_wav(data: bytes) -> bytes:
    """A streamed WAV carries "unknown length" sizes; a whole file gets the real ones."""
    if len(data) >= 44 and data[:4] == b"RIFF" and data[36:40] == b"data" and data[40:44] == b"\xff" * 4:
        (rate,) = struct.unpack("<I", data[24:28])
        return wav_header(rate, len(data) - 44) + data[44:]
    return data


def encode(pcm_int16: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """Encode mono int16 samples at `sample_rate` as a whole file in `fmt` (one of
    SUPPORTED_SPEECH_FORMATS). "pcm" comes out at 24 kHz (see the module docstring)."""
    fmt = _check_format(fmt)
    sample_rate = _check_rate(sample_rate)
    pcm = _as_int16(pcm_int16)
    if fmt == "wav":
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(sample_rate)
            w.writeframes(pcm.tobytes())  # native order: wave swaps on big-endian hosts itself
        return buf.getvalue()
    if fmt == "pcm" and sample_rate == PCM_SAMPLE_RATE:
        return _le_bytes(pcm)
    proc = _run_ffmpeg([*_raw_input_args(sample_rate), *_ENCODER_ARGS[fmt], "pipe:1"], _le_bytes(pcm))
    if proc.returncode != 0:
        raise OmniforgeError(f"ffmpeg could not encode {fmt}: {_summarize(proc.stderr)}")
    return proc.stdout


def _raw_input_args(sample_rate: int) -> list[str]:
    return ["-f", "s16le", "-ar", str(sample_rate), "-ac", "1", "-i", "pipe:0"]


def encode_stream(chunks: Iterable[np.ndarray], sample_rate: int, fmt: str) -> Iterator[bytes]:
    """Encode mono int16 chunks (one per sentence, as a SpeechModel yields them) into one `fmt`
    stream, yielding bytes as soon as they exist; joined, they form a valid file.

    The format is checked now, not at the first `next()`. For mp3, opus, aac, flac (and pcm at a
    rate other than 24 kHz) one ffmpeg process encodes the whole stream: a writer thread pulls
    `chunks` (so synthesis runs in that thread) and feeds ffmpeg while this generator yields
    ffmpeg's output. Closing the generator early kills ffmpeg and closes `chunks`.
    """
    fmt = _check_format(fmt)
    sample_rate = _check_rate(sample_rate)
    if fmt == "wav":
        return _passthrough_stream(chunks, wav_header(sample_rate))
    if fmt == "pcm" and sample_rate == PCM_SAMPLE_RATE:
        return _passthrough_stream(chunks, b"")
    return _ffmpeg_stream(chunks, sample_rate, fmt)


def _close(it: object) -> None:
    close = getattr(it, "close", None)
    if callable(close):
        close()


def _passthrough_stream(chunks: Iterable[np.ndarray], header: bytes) -> Iterator[bytes]:
    it = iter(chunks)
    try:
        if header:
            yield header
        for chunk in it:
            data = _le_bytes(chunk)
            if data:
                yield data
    finally:
        _close(it)  # a consumer that stops early stops the synthesis too


def _ffmpeg_stream(chunks: Iterable[np.ndarray], sample_rate: int, fmt: str) -> Iterator[bytes]:
    cmd = [
        *(ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-threads", "1"),
        *_raw_input_args(sample_rate),
        *_ENCODER_ARGS[fmt],
        *("-flush_packets", "1", "pipe:1"),  # hand each packet over at once: latency, not throughput
    ]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    stdin, stdout, stderr = proc.stdin, proc.stdout, proc.stderr
    stop = threading.Event()
    failure: list[BaseException] = []
    errors = bytearray()

    def feed() -> None:
        it = iter(chunks)
        try:
            for chunk in it:
                if stop.is_set():
                    break
                view = memoryview(_le_bytes(chunk))
                try:
                    while view:  # an unbuffered pipe may take part of a write (after a signal)
                        view = view[stdin.write(view) :]
                except OSError:
                    break  # ffmpeg went away: killed on early close, or failed (its exit status says)
        except BaseException as exc:  # a synthesis error: the consumer re-raises it
            failure.append(exc)
        finally:
            _close(it)
            try:
                stdin.close()  # end of input: ffmpeg flushes and exits
            except OSError:
                pass

    writer = threading.Thread(target=feed, name=f"omniforge-encode-{fmt}", daemon=True)
    drain = threading.Thread(target=lambda: errors.extend(stderr.read()), daemon=True)
    writer.start()
    drain.start()
    finished = False
    try:
        while block := stdout.read(1 << 16):  # unbuffered: returns whatever ffmpeg has written
            yield block
        returncode = proc.wait()
        writer.join()
        drain.join()
        finished = True
        if failure:
            raise failure[0]
        if returncode != 0:
            raise OmniforgeError(f"ffmpeg could not encode {fmt}: {_summarize(bytes(errors))}")
    finally:
        if not finished:
            stop.set()  # the writer stops after the chunk it is on; it is not waited for
            proc.kill()
            proc.wait()
            drain.join(timeout=5)
        stdout.close()
        stderr.close()
