"""POST /v1/audio/speech, /v1/audio/transcriptions and /v1/audio/translations.

Speech streams the encoded audio while later sentences are still being synthesized, and closes
the synthesis (and its model lease) when the client goes away. Transcriptions and translations
take a multipart upload in any container ffmpeg reads; the upload's size is bounded twice: by
the app's body limit before it is read, and here by what was actually read.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from ...audio import subtitles
from ...errors import InvalidRequestError
from ..protocol import TIMESTAMP_GRANULARITIES, TRANSCRIPTION_FORMATS, SpeechRequest
from ..streaming import LeasedStreamingResponse, iterate
from . import blocking, metrics_of, read_upload, served_by, service_of

router = APIRouter(tags=["audio"])

_TEXT_TYPES = {
    "text": "text/plain; charset=utf-8", "srt": "text/plain; charset=utf-8", "vtt": "text/vtt; charset=utf-8"
}


@router.post("/v1/audio/speech")
async def create_speech(body: SpeechRequest, request: Request) -> Response:
    service = service_of(request)
    if body.stream_format == "sse":
        raise InvalidRequestError("stream_format 'sse' is not supported; use 'audio'", param="stream_format")
    voice = body.voice.id if body.voice is not None and not isinstance(body.voice, str) else body.voice
    fmt = body.response_format or "mp3"  # OpenAI's default
    speed = 1.0 if body.speed is None else body.speed
    spec = await blocking(service.pick, body.model, "speech")
    served_by(request, spec)
    spec, content_type, stream = await blocking(service.speak, body.input, spec.id, voice, speed, fmt)
    return LeasedStreamingResponse(
        iterate(stream), on_close=stream.close, media_type=content_type, headers=served_by(request, spec)
    )


def _granularities(values: list[str] | None, fmt: str) -> set[str]:
    chosen = set(values or ())
    unknown = chosen - set(TIMESTAMP_GRANULARITIES)
    if unknown:
        raise InvalidRequestError(
            f"timestamp_granularities takes {' and '.join(TIMESTAMP_GRANULARITIES)}, not {', '.join(sorted(unknown))}",
            param="timestamp_granularities",
        )
    if "word" in chosen and fmt != "verbose_json":
        raise InvalidRequestError(
            "word timestamps need response_format verbose_json", param="timestamp_granularities"
        )
    return chosen


async def _transcribe(
    request: Request, *, task: str, file: UploadFile, model: str | None, language: str | None, prompt: str | None,
    response_format: str | None, temperature: float | None, granularities: list[str] | None,
) -> Response:
    service = service_of(request)
    fmt = response_format or "json"
    if fmt not in TRANSCRIPTION_FORMATS:
        raise InvalidRequestError(
            f"response_format must be one of {', '.join(TRANSCRIPTION_FORMATS)}", param="response_format"
        )
    chosen = _granularities(granularities, fmt)
    spec = await blocking(
        service.pick, model, "transcription", task="translation" if task == "translate" else None
    )
    served_by(request, spec)
    audio = await read_upload(request, file, "file", "the audio file")
    spec, transcript = await blocking(
        service.transcribe, audio, spec.id, language=language or None, prompt=prompt or None, task=task,
        word_timestamps="word" in chosen, temperature=0.0 if temperature is None else temperature,
    )
    headers = served_by(request, spec)
    metrics_of(request).audio_seconds.labels(spec.id).inc(transcript.duration)
    rendered: Any = subtitles.render(
        transcript, fmt, task=task, include_words="word" in chosen, include_segments=not chosen or "segment" in chosen
    )
    if isinstance(rendered, dict):
        return JSONResponse(rendered, headers=headers)
    return PlainTextResponse(rendered, media_type=_TEXT_TYPES[fmt], headers=headers)


# Form fields as the openai client sends them; arrays arrive as "name[]".
FileField = Annotated[UploadFile, File(description="audio in any common container")]
Text = Annotated[str | None, Form()]


@router.post("/v1/audio/transcriptions")
async def create_transcription(
    request: Request,
    file: FileField,
    model: Text = None,
    language: Text = None,
    prompt: Text = None,
    response_format: Text = None,
    temperature: Annotated[float | None, Form()] = None,
    timestamp_granularities: Annotated[list[str] | None, Form(alias="timestamp_granularities[]")] = None,
    timestamp_granularities_plain: Annotated[list[str] | None, Form(alias="timestamp_granularities")] = None,
) -> Response:
    return await _transcribe(
        request, task="transcribe", file=file, model=model, language=language, prompt=prompt,
        response_format=response_format, temperature=temperature,
        granularities=(timestamp_granularities or []) + (timestamp_granularities_plain or []),
    )


@router.post("/v1/audio/translations")
async def create_translation(
    request: Request,
    file: FileField,
    model: Text = None,
    prompt: Text = None,
    response_format: Text = None,
    temperature: Annotated[float | None, Form()] = None,
) -> Response:
    return await _transcribe(
        request, task="translate", file=file, model=model, language=None, prompt=prompt,
        response_format=response_format, temperature=temperature, granularities=None,
    )
