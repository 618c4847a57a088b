"""`omniforge speak`: synthesize speech into an audio file, written whole or not at all."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..audio.codec import CONTENT_TYPES, finish_wav
from ..errors import InvalidRequestError
from .state import read_stdin_text, save, state

# File suffix -> speech format (OpenAI's response_format names).
SUFFIX_FORMATS = {
    "wav": "wav",
    "mp3": "mp3",
    "flac": "flac",
    "opus": "opus",
    "ogg": "opus",
    "aac": "aac",
    "pcm": "pcm",
    "raw": "pcm",
}


def format_for(output: Path, fmt: str | None) -> str:
    """The format named by --format, else by the file's suffix (stdout: wav)."""
    from ..audio.codec import SUPPORTED_SPEECH_FORMATS

    if fmt:
        if fmt.lower() not in SUPPORTED_SPEECH_FORMATS:
            raise InvalidRequestError(
                f"--format must be one of {', '.join(SUPPORTED_SPEECH_FORMATS)}, not {fmt!r}", param="format"
            )
        return fmt.lower()
    if str(output) == "-":
        return "wav"
    suffix = output.suffix.lstrip(".").lower()
    if suffix not in SUFFIX_FORMATS:
        raise InvalidRequestError(
            f"cannot tell the audio format from '{output.name}'; use a suffix "
            f"({', '.join(sorted(SUFFIX_FORMATS))}) or --format",
            param="format",
        )
    return SUFFIX_FORMATS[suffix]


def speak(
    ctx: typer.Context,
    text: Annotated[
        str | None, typer.Argument(help="What to say; omit it or give '-' to read stdin.", show_default=False)
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Audio file to write ('-' for stdout).", show_default=False)
    ] = ...,  # type: ignore[assignment]
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Speech model id, alias or OpenAI name.", show_default=False)
    ] = None,
    voice: Annotated[
        str | None, typer.Option(help="Voice (the model's own, or an OpenAI voice name).", show_default=False)
    ] = None,
    speed: Annotated[float, typer.Option(help="Speaking rate, 0.25-4.0.")] = 1.0,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="wav, mp3, flac, opus, aac or pcm (default: from the file suffix).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Turn text into speech and write it to an audio file."""
    if text is None or text == "-":
        text = read_stdin_text() or ""
    st = state(ctx)
    fmt = format_for(output, fmt)
    spec, _, stream = st.service.speak(text, model, voice, speed, fmt)
    try:
        with st.progress.working(f"speaking with {spec.id}"):
            data = b"".join(stream)  # whole before written: an error leaves no half file
    finally:
        stream.close()
    if fmt == "wav":
        data = finish_wav(data)
    data = st.service.label(data, CONTENT_TYPES.get(fmt, ""), spec.id, text)
    if str(output) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    save(output, data)
    st.progress.note(f"wrote {output} ({fmt}, {len(data):,} bytes)")
