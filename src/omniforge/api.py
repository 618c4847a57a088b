"""The Python API: the same verbs as the CLI and server, on one lazily created Service."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .catalog import ModelSpec
from .config import load_settings
from .service import Service
from .types import GenerationParams, ImageParams, Message, Transcript

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


def _read(data: str | Path | bytes) -> bytes:
    return data if isinstance(data, bytes) else Path(data).read_bytes()


def image(prompt: str, path: str | Path | None = None, *, model: str | None = None, **params: object) -> list[Any]:
    """Make images (PIL images, `n` of them) from a prompt; the first is written to `path` when
    given. `params` are ImageParams fields: width, height, steps, guidance, seed, n, ..."""
    spec, result = get_service().generate_image(ImageParams(prompt=prompt, **params), model)  # type: ignore[arg-type]
    if path is not None:
        _save_image(spec.id, result.images[0], Path(path), prompt)
    return result.images


def edit_image(image: str | Path | bytes, prompt: str, path: str | Path | None = None, *,
               mask: str | Path | bytes | None = None, model: str | None = None, **params: object) -> list[Any]:
    """Repaint the mask's transparent (or white) area of `image`, or redraw it after `prompt`."""
    spec, result = get_service().edit_image(_read(image), prompt, _read(mask) if mask is not None else None, model,
                                            **params)
    if path is not None:
        _save_image(spec.id, result.images[0], Path(path), prompt)
    return result.images


def _save_image(model_id: str, img: Any, path: Path, prompt: str | None = None) -> None:
    from .storage import write_atomic

    fmt = {"jpg": "jpeg"}.get(path.suffix.lstrip(".").lower(), path.suffix.lstrip(".").lower() or "png")
    write_atomic(path, get_service().encode_image(img, fmt, model_id, prompt))


def video(prompt: str, path: str | Path, *, model: str | None = None, seconds: float = 8.0,
          size: tuple[int, int] | None = None, timeout: float = 3600) -> dict[str, Any]:
    """Make a video and write the MP4 to `path`; returns the finished job."""
    import time

    from .errors import OmniforgeError
    from .storage import write_atomic

    jobs = get_service().videos
    job = jobs.create(prompt, model, seconds, size)
    try:
        deadline = time.monotonic() + timeout
        while job["status"] in ("queued", "in_progress") and time.monotonic() < deadline:
            time.sleep(0.5)
            job = jobs.get(job["id"])
        if job["status"] != "completed":
            reason = (job.get("error") or {}).get("message", "timed out")
            raise OmniforgeError(f"video {job['id']} {job['status']}: {reason}")
        file, _ = jobs.content(job["id"])
        write_atomic(Path(path), file.read_bytes())
        return job
    finally:
        jobs.delete(job["id"])  # the file is the user's now; nothing stays behind in home


def describe(image: str | Path | bytes, *, prompt: str | None = None, model: str | None = None) -> str:
    """What the image shows, in the chat model's words (a vision model analyses, the LLM describes)."""
    return get_service().describe(_read(image), model, prompt).text.strip()
