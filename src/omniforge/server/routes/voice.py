"""WebSocket /v1/voice: a spoken conversation, the reply's audio streamed sentence by sentence.

One connection is one conversation (its memory lives as long as the socket). The protocol, all
text frames JSON objects with a "type":

client -> server
    {"type": "config", ...}   first, and again whenever settings change (memory is kept):
        model, transcription_model, speech_model   model ids or OpenAI names; defaults otherwise
        voice, speed                                as /v1/audio/speech (default voice: the model's)
        system                                      a system prompt for the chat model
        max_tokens, temperature, top_p, seed        as /v1/chat/completions
        language                                    of the speech in, for the transcription model
        format        audio out: "pcm16" (raw 24 kHz mono s16le, the default) or "wav"
        input_format  audio in: "auto" (any container ffmpeg reads, the default) or "pcm16"
    binary frames             the audio of one utterance, in pieces of any size
    {"type": "end"}           the utterance is complete: transcribe it and answer
    {"type": "reset"}         forget the conversation so far (the config stays)

server -> client
    {"type": "ready", "models": {...}, "format", "sample_rate"}   a config was accepted
    {"type": "transcript", "text", "language", "duration"}         what was heard
    {"type": "text", "index", "text"}  one sentence of the reply, sent once its audio is ready and
                                       followed by exactly one binary frame: that audio (raw
                                       pcm16, or a whole WAV file)
    {"type": "reply", "text", "finish_reason"}   the chat model has finished the whole reply (its
                                       audio may still be coming); sent between pairs, never inside one
    {"type": "done", "usage", "timings"}          the turn is over; timings are seconds since "end"
    {"type": "error", "error": {"message", "type", "param", "code"}}   OpenAI's error shape

Sentences are cut from the reply as its tokens arrive and each is synthesized at once, while the
chat model writes on: the first audio goes out long before the reply is finished. The chat model's
lease is never held waiting on speech (sentences queue without bound between the two). An error
ends the turn, not the connection: the socket stays ready for the next config or utterance.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, ValidationError

from ...errors import InvalidRequestError, PayloadTooLargeError, UnsupportedMediaError
from ...service import Service
from ...types import Message, TextDelta, Usage
from ..errors import to_error
from ..streaming import iterate
from . import blocking, new_id
from ._text import params

router = APIRouter(tags=["audio"])

MAX_HISTORY_TURNS = 16  # older turns are dropped from the conversation memory
MAX_SENTENCE_CHARS = 200  # a run-on sentence is cut at a clause (or word) boundary past this
SAMPLE_RATE = 24_000  # of "pcm16", in and out, as OpenAI's pcm

# Words after which a period does not end a sentence (followed by a capital or a number).
ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "mt", "gen", "col", "capt", "lt", "sgt", "rev", "hon",
    "vs", "cf", "approx", "fig", "figs", "no", "nos", "vol", "pp", "ca", "e.g", "i.e", "u.s", "u.k", "a.m", "p.m",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
})
_CLOSERS = "\"')]}\u201d\u2019»"
_END_MARKS = ".!?\u2026"
_SPEAKABLE = re.compile(r"\w")
_MARKUP = re.compile(r"[*_`#~>|]+")


class SentenceSplitter:
    """Cuts streamed text into sentences as soon as each is known to be complete.

    A sentence ends at . ! ? or … (with any closing quotes or brackets) followed by white space
    and the start of another sentence, or at a line break. A period does not end a sentence
    after a known abbreviation ("Dr. Smith", "e.g. this"), an initial ("J. Smith"), a list
    number ("1. First"), or before a lower-case word; decimals ("3.14") never qualify. A
    sentence longer than `max_chars` is cut at its last clause mark, else its last space.
    """

    def __init__(self, max_chars: int = MAX_SENTENCE_CHARS) -> None:
        self.max_chars = max_chars
        self._buf = ""

    def feed(self, text: str) -> list[str]:
        self._buf += text
        out = []
        while True:
            cut = self._boundary()
            if cut is None:
                break
            sentence, self._buf = self._buf[:cut].strip(), self._buf[cut:].lstrip()
            if sentence:
                out.append(sentence)
        return out

    def flush(self) -> list[str]:
        rest, self._buf = self._buf.strip(), ""
        return [rest] if rest else []

    def _boundary(self) -> int | None:
        buf = self._buf
        for i, ch in enumerate(buf):
            if ch == "\n":
                if buf[:i].strip():
                    return i + 1
                continue
            if ch not in _END_MARKS:
                continue
            j = i + 1
            while j < len(buf) and (buf[j] in _END_MARKS or buf[j] in _CLOSERS):
                j += 1
            k = j
            while k < len(buf) and buf[k] in " \t":
                k += 1
            if k == j:  # no space after the mark ("3.14", "e.g.x", or the text so far ends here)
                continue
            if k == len(buf):  # the next word is not there yet: wait for it
                return self._overflow()
            if buf[k] == "\n" or self._ends_sentence(buf, i, buf[k]):
                return j
        return self._overflow()

    @staticmethod
    def _ends_sentence(buf: str, mark: int, following: str) -> bool:
        if buf[mark] != ".":
            return True  # ! ? … end a sentence whatever follows
        if following.islower():
            return False
        word = re.search(r"([\w.]*)$", buf[:mark]).group(1).lower()  # type: ignore[union-attr]
        if word in ABBREVIATIONS:
            return False
        if len(word) == 1 and word.isalpha():  # an initial: "J. Smith"
            return False
        # a list number ("1. First") is no sentence
        return not (word.isdigit() and not buf[: mark - len(word)].strip())

    def _overflow(self) -> int | None:
        buf = self._buf
        if len(buf) <= self.max_chars:
            return None
        head = buf[: self.max_chars]
        for marks in (",;:", " "):
            cut = max(head.rfind(m) for m in marks)
            if cut > self.max_chars // 3:
                return cut + 1
        return self.max_chars


def speakable(sentence: str) -> str:
    """The sentence as the speech model should read it: markup marks dropped."""
    return " ".join(_MARKUP.sub(" ", sentence).split())


class VoiceConfig(BaseModel):
    """The "config" message."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["config"] = "config"
    model: str | None = None
    transcription_model: str | None = None
    speech_model: str | None = None
    voice: str | None = None
    speed: float = 1.0
    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    language: str | None = None
    format: Literal["pcm16", "wav"] = "pcm16"
    input_format: Literal["auto", "pcm16"] = "auto"


@dataclass
class Session:
    """One connection's state: its config, its memory and the utterance being received."""

    config: VoiceConfig | None = None
    models: dict[str, str] = field(default_factory=dict)  # chat, transcription, speech: resolved ids
    history: list[Message] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    discarding: bool = False  # an error was reported for this utterance: drop frames until "end"

    def remember(self, user: str, assistant: str) -> None:
        self.history += [Message("user", user), Message("assistant", assistant)]
        del self.history[: max(0, len(self.history) - 2 * MAX_HISTORY_TURNS)]


class Outbox:
    """Sends on the socket; a sentence's text and audio go out together, never split by another message."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.lock = anyio.Lock()

    async def json(self, message: dict[str, Any]) -> None:
        async with self.lock:
            await self.ws.send_text(json.dumps(message, ensure_ascii=False))

    async def pair(self, message: dict[str, Any], audio: bytes) -> None:
        async with self.lock:
            await self.ws.send_text(json.dumps(message, ensure_ascii=False))
            await self.ws.send_bytes(audio)

    async def error(self, exc: BaseException) -> None:
        await self.json({"type": "error", **to_error(exc).to_openai()})


@router.websocket("/v1/voice")
async def voice(ws: WebSocket) -> None:
    """A spoken conversation: audio in, transcript and streamed spoken reply out (see the module)."""
    await ws.accept()
    service: Service = ws.app.state.service
    out = Outbox(ws)
    session = Session()
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            try:
                await _handle(ws, service, session, out, message)
            except WebSocketDisconnect:
                raise
            except Exception as exc:  # noqa: BLE001 - the turn is over; the connection is not
                session.audio.clear()
                session.discarding = message.get("bytes") is not None  # the rest of this utterance goes
                try:
                    await out.error(exc)
                except Exception:  # noqa: BLE001 - the socket itself is gone
                    return


async def _handle(ws: WebSocket, service: Service, session: Session, out: Outbox, message: dict[str, Any]) -> None:
    data = message.get("bytes")
    if data is not None:
        if session.discarding:
            return
        if session.config is None:
            raise InvalidRequestError('send a {"type": "config"} message before the audio', param="type",
                                      code="config_required")
        limit = int(service.settings.max_upload_mb * 2**20)
        if len(session.audio) + len(data) > limit:
            raise PayloadTooLargeError(f"the utterance is over the {limit / 2**20:g} MB limit (setting max_upload_mb)",
                                       param="audio")
        session.audio += data
        return
    event = _parse(message.get("text") or "")
    kind = event.get("type")
    if kind == "config":
        session.config, session.models = await _configure(service, event, out)
    elif kind == "reset":
        session.history.clear()
    elif kind == "end":
        audio, session.audio, discarded = bytes(session.audio), bytearray(), session.discarding
        session.discarding = False
        if discarded:
            return  # its error was reported already
        if session.config is None:
            raise InvalidRequestError('send a {"type": "config"} message before the audio', param="type",
                                      code="config_required")
        await _turn(service, session, session.config, audio, out, metrics=ws.app.state.metrics)
    else:
        raise InvalidRequestError(f"unknown message type {kind!r}; send config, end or reset, and audio as binary "
                                  "frames", param="type")


def _parse(text: str) -> dict[str, Any]:
    try:
        event = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(f"a text message must be a JSON object ({exc.msg})", code="invalid_json") from None
    if not isinstance(event, dict):
        raise InvalidRequestError("a text message must be a JSON object with a 'type'", param="type")
    return event


async def _configure(service: Service, event: dict[str, Any], out: Outbox) -> tuple[VoiceConfig, dict[str, str]]:
    try:
        config = VoiceConfig.model_validate(event)
    except ValidationError as exc:
        raise to_error(RequestValidationError(exc.errors())) from None
    if not 0.25 <= config.speed <= 4.0:
        raise InvalidRequestError("speed must be between 0.25 and 4.0", param="speed")
    chat = await blocking(service.pick, config.model, "text")
    heard = await blocking(service.pick, config.transcription_model, "transcription")
    spoken = await blocking(service.pick, config.speech_model, "speech")
    models = {"chat": chat.id, "transcription": heard.id, "speech": spoken.id}
    await out.json({"type": "ready", "models": models, "format": config.format,
                    "sample_rate": SAMPLE_RATE if config.format == "pcm16" else None})
    return config, models


def _container(audio: bytes, config: VoiceConfig) -> bytes:
    """The utterance as a file ffmpeg reads: raw pcm16 gets a WAV header."""
    from ...audio import codec

    if not audio:
        raise UnsupportedMediaError("the utterance has no audio: send binary frames before 'end'", param="audio")
    if config.input_format == "pcm16":
        if len(audio) % 2:
            raise UnsupportedMediaError("pcm16 audio has an odd number of bytes", param="audio")
        return codec.finish_wav(codec.wav_header(SAMPLE_RATE, len(audio)) + audio)
    return audio


def _synthesize(service: Service, text: str, model: str, config: VoiceConfig) -> tuple[bytes, float]:
    """One sentence's audio in the configured format, and its length in seconds."""
    from ...audio import codec

    _, _, stream = service.speak(text, model, config.voice, config.speed, "pcm" if config.format == "pcm16" else "wav")
    try:
        data = b"".join(stream)
    finally:
        stream.close()
    if config.format == "pcm16":
        return data, len(data) / (2 * SAMPLE_RATE)
    data = codec.finish_wav(data)
    rate = int.from_bytes(data[24:28], "little")  # a 16-bit mono WAV with a 44-byte header
    return data, (len(data) - 44) / (2 * rate)


async def _turn(service: Service, session: Session, config: VoiceConfig, audio: bytes, out: Outbox,
                metrics: Any) -> None:
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    def mark(name: str) -> None:
        timings.setdefault(name, round(time.perf_counter() - t0, 3))

    heard_spec, transcript = await blocking(service.transcribe, _container(audio, config),
                                            session.models["transcription"], language=config.language)
    metrics.audio_seconds.labels(heard_spec.id).inc(transcript.duration)
    question = transcript.text.strip()
    mark("transcribed")
    await out.json({"type": "transcript", "text": question, "language": transcript.language,
                    "duration": round(transcript.duration, 3)})
    if not question:
        raise InvalidRequestError("no speech was heard in the utterance", param="audio", code="no_speech")
    system = [Message("system", config.system)] if config.system else []
    p = params(max_tokens=config.max_tokens, temperature=config.temperature, top_p=config.top_p, seed=config.seed,
               stop=None)
    stream = await blocking(service.stream_chat, [*system, *session.history, Message("user", question)],
                            session.models["chat"], p)
    sentences_in, sentences_out = anyio.create_memory_object_stream[str](max_buffer_size=float("inf"))
    reply: list[str] = []
    usage = Usage()
    finish = "stop"
    spoken_seconds = 0.0
    failures: list[BaseException] = []

    async def write() -> None:  # the chat model's side: tokens -> sentences, lease freed at the end
        nonlocal usage, finish
        splitter = SentenceSplitter()
        try:
            async with sentences_in:
                delta: TextDelta
                async for _, delta in iterate(stream):
                    reply.append(delta.text)
                    for sentence in splitter.feed(delta.text):
                        await sentences_in.send(sentence)
                    if delta.finish_reason:
                        finish, usage = delta.finish_reason, delta.usage or Usage()
                for sentence in splitter.flush():
                    await sentences_in.send(sentence)
        finally:
            with anyio.CancelScope(shield=True):
                await blocking(stream.close)
        mark("reply_written")
        await out.json({"type": "reply", "text": "".join(reply).strip(), "finish_reason": finish})

    async def speak() -> None:  # the speech model's side: each sentence spoken as it comes
        nonlocal spoken_seconds
        index, carried = 0, ""
        async with sentences_out:
            async for sentence in sentences_out:
                sentence = f"{carried} {sentence}".strip() if carried else sentence
                text = speakable(sentence)
                if not _SPEAKABLE.search(text):  # markup or punctuation alone: read with the next one
                    carried = sentence
                    continue
                carried = ""
                audio, seconds = await blocking(_synthesize, service, text, session.models["speech"], config)
                spoken_seconds += seconds
                await out.pair({"type": "text", "index": index, "text": sentence}, audio)
                mark("first_audio")
                index += 1

    async def guarded(task: Callable[[], Awaitable[None]], scope: anyio.CancelScope) -> None:
        try:
            await task()
        except Exception as exc:  # noqa: BLE001 - re-raised once both sides have stopped
            failures.append(exc)
            scope.cancel()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(guarded, write, tg.cancel_scope)
            tg.start_soon(guarded, speak, tg.cancel_scope)
    finally:
        with anyio.CancelScope(shield=True):
            await blocking(stream.close)
    if failures:
        raise failures[0]
    answer = "".join(reply).strip()
    session.remember(question, answer)
    metrics.count_tokens(session.models["chat"], usage.prompt_tokens, usage.completion_tokens)
    mark("done")
    await out.json({
        "type": "done",
        "id": new_id("voice"),
        "usage": {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                  "total_tokens": usage.total_tokens, "input_audio_seconds": round(transcript.duration, 3),
                  "output_audio_seconds": round(spoken_seconds, 3)},
        "timings": timings,
    })
