"""The Python API: the same verbs as the CLI and server, on one lazily created Service."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from .catalog import ModelSpec
from .config import load_settings
from .service import Service
from .types import GenerationParams, Message, Transcript

_service: Service | None = None
_lock = threading.Lock()


def get_service() -> Service:
    """The process-wide Service (settings from the environment and config file)."""
    global _service
    with _lock:
        if _service is None:
            _service = Service(load_settings())
        return _service


def configure(**settings: object) -> Service:
    """Replace the process-wide Service with one built from these settings overrides."""
    global _service
    with _lock:
        if _service is not None:
            _service.close()
        _service = Service(load_settings(**settings))
        return _service


def _messages(messages: str | list[Message] | list[dict[str, str]]) -> list[Message]:
    if isinstance(messages, str):
        return [Message("user", messages)]
    return [m if isinstance(m, Message) else Message(m["role"], m["content"]) for m in messages]


def chat(
    messages: str | list[Message] | list[dict[str, str]],
    *,
    model: str | None = None,
    stream: bool = False,
    **params: object,
) -> str | Iterator[str]:
    """Answer a chat: a prompt string or a list of {"role", "content"} messages.

    `params` are GenerationParams fields (max_tokens, temperature, top_p, seed, stop,
    response_format). With stream=True, yields text pieces as they are generated.
    """
    it = get_service().stream_chat(_messages(messages), model, GenerationParams(**params))  # type: ignore[arg-type]
    if stream:
        return (delta.text for _, delta in it)
    return Service.collect(it)[0].text


def complete(prompt: str, *, model: str | None = None, suffix: str | None = None, **params: object) -> str:
    """Continue `prompt` with a text model (a base-model completion, no chat template)."""
    return get_service().complete(prompt, model, GenerationParams(**params), suffix=suffix)[0].text  # type: ignore[arg-type]


def speak(
    text: str,
    path: str | Path | None = None,
    *,
    model: str | None = None,
    voice: str | None = None,
    speed: float = 1.0,
    format: str | None = None,
) -> bytes:
    """Synthesize speech; returns the encoded audio and writes it to `path` when given
    (format from the path's suffix unless named)."""
    fmt = format or (Path(path).suffix.lstrip(".").lower() if path else "") or "wav"
    _, _, stream = get_service().speak(text, model, voice, speed, fmt)
    from .audio.codec import finish_wav

    data = finish_wav(b"".join(stream))
    if path is not None:
        from .storage import write_atomic

        write_atomic(Path(path), data)
    return data


def transcribe(
    audio: str | Path | bytes,
    *,
    model: str | None = None,
    language: str | None = None,
    prompt: str | None = None,
    translate: bool = False,
    word_timestamps: bool = False,
) -> Transcript:
    """Transcribe an audio file or its bytes (any container ffmpeg reads)."""
    data = audio if isinstance(audio, bytes) else Path(audio).read_bytes()
    _, transcript = get_service().transcribe(
        data, model, language=language, prompt=prompt,
        task="translate" if translate else "transcribe", word_timestamps=word_timestamps,
    )
    return transcript


def embed(texts: str | list[str], *, model: str | None = None) -> list[float] | list[list[float]]:
    """Embed one text (-> one vector) or a list (-> a list of vectors)."""
    _, result = get_service().embed(texts, model)
    return result.vectors[0] if isinstance(texts, str) else result.vectors


def models() -> list[ModelSpec]:
    return get_service().models()
