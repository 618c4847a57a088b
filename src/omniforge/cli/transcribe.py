"""`omniforge transcribe`: speech in any common audio container to text, JSON or subtitles."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import InvalidRequestError
from ..types import Transcript
from .state import save, state, write_out

FORMATS = ("text", "json", "verbose_json", "srt", "vtt")


def render(transcript: Transcript, fmt: str, words: bool) -> str:
    """The transcript in one of FORMATS, as OpenAI's transcription endpoint writes it."""
    from ..audio import subtitles

    out: Any
    if fmt == "text":
        out = transcript.text.strip() + "\n"
    elif fmt == "json":
        out = subtitles.to_json(transcript)
    elif fmt == "verbose_json":
        out = subtitles.to_verbose_json(transcript, include_words=words, include_segments=True)
    elif fmt == "srt":
        out = subtitles.to_srt(transcript)
    else:
        out = subtitles.to_vtt(transcript)
    if not isinstance(out, str):  # renderers may hand back the JSON object itself
        out = json.dumps(out, indent=2, ensure_ascii=False)
    return out if out.endswith("\n") else out + "\n"


def transcribe(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(help="Audio file (wav, mp3, flac, ogg, m4a, webm, ...); '-' reads stdin.", show_default=False),
    ],
    fmt: Annotated[str, typer.Option("--format", "-f", help=f"Output: {', '.join(FORMATS)}.")] = "text",
    language: Annotated[
        str | None,
        typer.Option(
            "--language", "-l", help="Spoken language (ISO 639-1, e.g. en); detected when omitted.", show_default=False
        ),
    ] = None,
    prompt: Annotated[
        str | None, typer.Option(help="Text that guides spelling and style (names, jargon).", show_default=False)
    ] = None,
    translate: Annotated[
        bool, typer.Option("--translate", help="Translate to English (a multilingual model: the translation default).")
    ] = False,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Transcription model id, alias or OpenAI name.", show_default=False),
    ] = None,
    words: Annotated[bool, typer.Option("--words", help="Word timestamps (in verbose_json).")] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.", show_default=False)
    ] = None,
) -> None:
    """Transcribe (or translate to English) the speech in an audio file."""
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise InvalidRequestError(f"--format must be one of {', '.join(FORMATS)}", param="format")
    if str(file) == "-":
        data = sys.stdin.buffer.read() if sys.stdin is not None else b""
    else:
        data = file.read_bytes()
    st = state(ctx)
    with st.progress.working(
        f"{'translating' if translate else 'transcribing'} {'stdin' if str(file) == '-' else file.name}"
    ):
        _, transcript = st.service.transcribe(
            data,
            model,
            language=language,
            prompt=prompt,
            task="translate" if translate else "transcribe",
            word_timestamps=words,
        )
    text = render(transcript, fmt, words)
    if output is None:
        write_out(text)
    else:
        save(output, text.encode())
        st.progress.note(f"wrote {output}")
