"""POST /v1/chat/completions: OpenAI chat, whole or streamed as server-sent events.

Content may be a string or a list of parts: text, image_url (data URLs) and input_audio. A model
that sees gets the images; for one that does not, the vision model's findings go in as text, and
audio goes in as its transcript. With modalities ["text", "audio"] the answer is spoken too. Choices (n) run one after another on the same lease.
A stream sends each choice's role first, then its text, then a chunk with its finish_reason;
with stream_options.include_usage a last chunk with no choices carries the usage.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ...errors import InvalidRequestError
from ...imaging import decode_data_url
from ...router.router import request_from_chat, route_and_run
from ...service import MAX_SPEECH_CHARS, LeasedStream
from ...types import Message, TextDelta
from ..errors import to_error
from ..metering import ROUTE_HEADER, cost_fields
from ..metrics import Metrics
from ..protocol import AssistantMessage, ChatChoice, ChatCompletion, ChatCompletionRequest, ChatMessage, ResponseFormat
from ..streaming import LeasedStreamingResponse, iterate, sse, sse_error
from . import SYSTEM_FINGERPRINT, blocking, metrics_of, new_id, now, served_by, service_of
from ._text import UsageSum, n_of, params, refuse_unsupported

router = APIRouter(tags=["chat"])

_IMAGE_PARTS = {"image_url", "input_image"}
_AUDIO_PARTS = {"input_audio"}
_UNSUPPORTED_PARTS = {"image", "audio", "file", "input_file", "video_url"}
AUDIO_OUT_FORMATS = {"wav": "wav", "mp3": "mp3", "flac": "flac", "opus": "opus", "aac": "aac", "pcm16": "pcm"}


def _image_part(part: dict[str, Any], where: str, settings: Any) -> bytes:
    ref = part.get("image_url")
    url = ref.get("url") if isinstance(ref, dict) else ref
    if not isinstance(url, str):
        raise InvalidRequestError(f"{where}.image_url.url must be a string", param=f"{where}.image_url")
    if url.strip().lower().startswith(("http://", "https://")):  # off unless allow_remote_urls; never private hosts
        from ...governance.fetch import fetch_remote

        return fetch_remote(url.strip(), settings, int(settings.max_upload_mb * 2**20), param=f"{where}.image_url.url")
    return decode_data_url(url, f"{where}.image_url.url")


def _audio_part(part: dict[str, Any], where: str) -> bytes:
    ref = part.get("input_audio")
    data = ref.get("data") if isinstance(ref, dict) else None
    if not isinstance(data, str) or not data:
        raise InvalidRequestError(f"{where}.input_audio.data must be base64 audio", param=f"{where}.input_audio")
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(f"{where}.input_audio.data is not valid base64", param=f"{where}.input_audio") from None


def _message(i: int, m: ChatMessage, settings: Any) -> Message:
    if m.content is None:
        return Message(m.role, "")  # type: ignore[arg-type]  # the service validates roles
    if isinstance(m.content, str):
        return Message(m.role, m.content)  # type: ignore[arg-type]
    texts, images, audio = [], [], []
    for j, part in enumerate(m.content):
        kind = part.get("type")
        where = f"messages[{i}].content[{j}]"
        if kind in ("text", "input_text"):
            if not isinstance(part.get("text"), str):
                raise InvalidRequestError(f"{where}.text must be a string", param=f"{where}.text")
            texts.append(part["text"])
        elif kind in _IMAGE_PARTS:
            images.append(_image_part(part, where, settings))
        elif kind in _AUDIO_PARTS:
            audio.append(_audio_part(part, where))
        elif kind in _UNSUPPORTED_PARTS:
            raise InvalidRequestError(
                f"{where} is a '{kind}' part, which chat does not take; send text, image_url or input_audio parts",
                param=f"{where}.type",
                code="unsupported_content",
            )
        else:
            raise InvalidRequestError(f"{where}.type {kind!r} is not a known content part type", param=f"{where}.type")
    return Message(m.role, "\n".join(texts), images=images, audio=audio)  # type: ignore[arg-type]


def _audio_out(body: ChatCompletionRequest) -> tuple[str | None, str] | None:
    """(voice, format) when the answer should be spoken too; None for text only."""
    modalities = body.modalities or ["text"]
    unknown = set(modalities) - {"text", "audio"}
    if unknown:
        raise InvalidRequestError("modalities takes text and audio", param="modalities")
    if "audio" not in modalities:
        return None
    if body.audio is None:
        raise InvalidRequestError('modalities ["text", "audio"] needs an audio parameter: {"voice", "format"}',
                                  param="audio")
    fmt = body.audio.format or ("pcm16" if body.stream else "wav")
    if fmt not in AUDIO_OUT_FORMATS:
        raise InvalidRequestError(f"audio.format must be one of {', '.join(AUDIO_OUT_FORMATS)}", param="audio.format")
    if body.stream and fmt != "pcm16":
        raise InvalidRequestError("a streamed spoken answer is pcm16 (24 kHz, 16-bit mono), as OpenAI's",
                                  param="audio.format")
    voice = body.audio.voice.get("id") if isinstance(body.audio.voice, dict) else body.audio.voice
    return voice, AUDIO_OUT_FORMATS[fmt]


def _pieces(text: str) -> list[str]:
    """The answer cut at sentence ends into pieces the speech model takes (MAX_SPEECH_CHARS each)."""
    pieces: list[str] = []
    for sentence in re.split(r"(?<=[.!?])\s+", text.strip() or "..."):
        while len(sentence) > MAX_SPEECH_CHARS:  # one endless sentence: cut it at a space
            cut = sentence.rfind(" ", 0, MAX_SPEECH_CHARS) if " " in sentence[:MAX_SPEECH_CHARS] else MAX_SPEECH_CHARS
            pieces.append(sentence[:cut])
            sentence = sentence[cut:].lstrip()
        if pieces and len(pieces[-1]) + 1 + len(sentence) <= MAX_SPEECH_CHARS:
            pieces[-1] += " " + sentence
        elif sentence:
            pieces.append(sentence)
    return pieces


def _pcm(service: Any, text: str, voice: str | None) -> Iterator[bytes]:
    """24 kHz mono int16 speech for `text` of any length, piece by piece."""
    for piece in _pieces(text):
        _, _, stream = service.speak(piece, None, voice, 1.0, "pcm")
        try:
            yield from stream
        finally:
            stream.close()


def _speak(service: Any, text: str, voice: str | None, fmt: str) -> dict[str, Any]:
    import numpy as np

    from ...audio import codec

    pcm = np.frombuffer(b"".join(_pcm(service, text, voice)), dtype=np.int16)
    data = pcm.tobytes() if fmt == "pcm" else codec.encode(pcm, codec.PCM_SAMPLE_RATE, fmt)
    return {"id": new_id("audio"), "data": base64.b64encode(data).decode(), "expires_at": now() + 3600,
            "transcript": text}


def _response_format(rf: ResponseFormat | None) -> dict[str, Any] | None:
    if rf is None or rf.type == "text":
        return None
    if rf.type == "json_object":
        return {"type": "json_object"}
    schema = rf.json_schema.schema_ if rf.json_schema else None
    if schema is None:
        raise InvalidRequestError(
            "response_format of type json_schema needs json_schema.schema (a JSON Schema object)",
            param="response_format.json_schema",
        )
    assert rf.json_schema is not None
    return {"type": "json_schema", "schema": schema, "name": rf.json_schema.name, "strict": rf.json_schema.strict}


@router.post("/v1/chat/completions", response_model=ChatCompletion)
async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Any:
    service = service_of(request)
    refuse_unsupported(
        frequency_penalty=body.frequency_penalty, presence_penalty=body.presence_penalty,
        logit_bias=body.logit_bias, logprobs=body.logprobs, top_logprobs=body.top_logprobs, tools=body.tools,
    )
    if body.stream_options is not None and not body.stream:
        raise InvalidRequestError("stream_options is only allowed when stream is true", param="stream_options")
    # in a worker thread: an image URL (when allowed) is fetched here
    messages = await blocking(lambda: [_message(i, m, service.settings) for i, m in enumerate(body.messages)])
    spoken = _audio_out(body)
    n = n_of(body.n)
    max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    p = params(
        max_tokens=max_tokens, temperature=body.temperature, top_p=body.top_p, seed=body.seed, stop=body.stop,
        response_format=_response_format(body.response_format), watermark=body.watermark,
    )
    if service.routes(body.model, "text"):  # the router picks, and falls back to the next candidate on overload
        decision = await blocking(service.router.route, request_from_chat(body.model_dump(exclude_none=True)))
        stream = await blocking(route_and_run, decision, lambda model_id: service.stream_chat(messages, model_id, p, n))
        spec = service.catalog.get(decision.served_by or decision.model)
        headers = {**served_by(request, spec), ROUTE_HEADER: decision.header()}
    else:
        spec = await blocking(service.pick, body.model, "text")
        headers = served_by(request, spec)
        stream = await blocking(service.stream_chat, messages, spec.id, p, n)
    meta = {"id": new_id("chatcmpl"), "created": now(), "model": spec.id}
    metrics = metrics_of(request)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return LeasedStreamingResponse(
            _events(stream, meta, include_usage, metrics, service, (spoken[0],) if spoken else None, n),
            on_close=stream.close,
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    texts, usage = await blocking(_collect, stream, n)
    metrics.count_tokens(spec.id, usage.prompt_tokens, usage.completion_tokens)
    if spoken:
        audio = [await blocking(_speak, service, text, *spoken) for text in texts]
        answers = [AssistantMessage(content=None, audio=a) for a in audio]
    else:
        answers = [AssistantMessage(content=text) for text in texts]
    result = ChatCompletion(
        **meta,
        system_fingerprint=SYSTEM_FINGERPRINT,
        choices=[
            ChatChoice(index=i, message=answers[i], finish_reason=usage.finish.get(i, "stop")) for i in range(n)
        ],
        usage=usage.wire(**cost_fields(service.meter)),
    )
    return JSONResponse(result.model_dump(exclude_none=False), headers=headers)


def _collect(stream: LeasedStream[tuple[int, TextDelta]], n: int) -> tuple[list[str], UsageSum]:
    parts: list[list[str]] = [[] for _ in range(n)]
    usage = UsageSum()
    try:
        for i, delta in stream:
            parts[i].append(delta.text)
            usage.add(i, delta)
    finally:
        stream.close()
    return ["".join(p) for p in parts], usage


async def _events(
    stream: LeasedStream[tuple[int, TextDelta]], meta: dict[str, Any], include_usage: bool, metrics: Metrics,
    service: Any, speaker: tuple[str | None] | None = None, n_choices: int = 1,
) -> AsyncIterator[str]:
    """Chunks as OpenAI streams them. A spoken answer (`speaker`: the voice) streams its text as
    audio.transcript deltas, then the speech as base64 pcm16 audio.data deltas."""
    base = {"id": meta["id"], "object": "chat.completion.chunk", "created": meta["created"], "model": meta["model"],
            "system_fingerprint": SYSTEM_FINGERPRINT}

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> str:
        event = {**base, "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if include_usage:
            event["usage"] = None  # as OpenAI: every chunk but the last has a null usage
        return sse(event)

    usage = UsageSum()
    started: set[int] = set()
    texts: dict[int, list[str]] = {}
    audio_ids: dict[int, str] = {}
    try:
        async for i, delta in iterate(stream):
            if i not in started:
                started.add(i)
                yield chunk(i, {"role": "assistant", "content": None if speaker else ""})
            if delta.text:
                if speaker:
                    texts.setdefault(i, []).append(delta.text)
                    aid = audio_ids.setdefault(i, new_id("audio"))
                    yield chunk(i, {"audio": {"id": aid, "transcript": delta.text}})
                else:
                    yield chunk(i, {"content": delta.text})
            if delta.finish_reason:
                usage.add(i, delta)
                if speaker:
                    aid = audio_ids.setdefault(i, new_id("audio"))
                    (voice,) = speaker
                    if len(usage.finish) == n_choices:  # the last choice: free the chat model first
                        await blocking(stream.close)
                    speech = _pcm(service, "".join(texts.get(i, [])), voice)
                    try:
                        async for pcm in iterate(speech):
                            data = base64.b64encode(pcm).decode()
                            yield chunk(i, {"audio": {"id": aid, "data": data, "expires_at": now() + 3600}})
                    finally:
                        await blocking(speech.close)
                yield chunk(i, {}, delta.finish_reason)
        if include_usage:
            yield sse({**base, "choices": [], "usage": usage.wire(**cost_fields(service.meter)).model_dump()})
        yield "data: [DONE]\n\n"
    except Exception as exc:  # the response has started: report in-band, as OpenAI does
        yield sse_error(to_error(exc))
    finally:
        metrics.count_tokens(meta["model"], usage.prompt_tokens, usage.completion_tokens)
