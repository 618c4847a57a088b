"""The one front door below the server, the CLI, the Python API and pipelines.

A call names a model (or none, or an OpenAI name), is validated here once with the parameter's
name in every error, resolved through the catalog, and run on a leased instance from the runtime.
Streams are primed before they are returned, so errors (unknown model, context overflow,
overload) surface before a server has sent its first byte.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, Generic, TypeVar

from .catalog import Catalog, ModelSpec
from .config import Settings, load_settings
from .errors import InvalidRequestError, PayloadTooLargeError
from .runtime import ModelManager
from .types import EmbeddingResult, GenerationParams, Message, TextDelta, TextResult, Transcript, Usage

log = logging.getLogger("omniforge.service")

T = TypeVar("T")
_END = object()

MAX_CHOICES = 8  # n above this is refused: each choice is a full generation on one CPU model
MAX_STOP = 4  # as OpenAI
MAX_SPEECH_CHARS = 4096  # as OpenAI
OPENAI_VOICES = (
    "alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse",
    "marin", "cedar",
)
ROLES = ("system", "developer", "user", "assistant", "tool")


class LeasedStream(Generic[T]):
    """An iterator that holds a model lease until it is exhausted, closed or collected."""

    def __init__(self, first: Any, rest: Iterator[T], stack: contextlib.ExitStack) -> None:
        self._first, self._rest, self._stack = first, rest, stack

    def __iter__(self) -> LeasedStream[T]:
        return self

    def __next__(self) -> T:
        if self._first is not _END:
            item, self._first = self._first, _END
            return item
        try:
            return next(self._rest)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._first = _END
        close = getattr(self._rest, "close", None)
        try:
            if close:
                close()
        finally:
            self._stack.close()

    def __del__(self) -> None:
        self.close()


class Service:
    def __init__(self, settings: Settings | None = None, runtime: ModelManager | None = None) -> None:
        self.settings = settings or load_settings()
        self.settings.ensure_home()
        defaults = {
            name: getattr(self.settings, name)
            for name in (
                "default_chat_model", "default_speech_model", "default_transcription_model",
                "default_translation_model", "default_embedding_model",
            )
        }
        self.catalog = Catalog(self.settings.catalog_path, defaults)
        self.runtime = runtime or ModelManager(self.settings)

    def close(self) -> None:
        self.runtime.close()

    # -- models ----------------------------------------------------------------------------
    def models(self) -> list[ModelSpec]:
        return self.catalog.all()

    def model(self, model_id: str) -> ModelSpec:
        return self.catalog.get(model_id)

    def preload(self, model_ids: list[str]) -> None:
        for model_id in model_ids:
            self.runtime.load(self.catalog.get(model_id))

    def _stream(self, spec: ModelSpec, make: Any) -> LeasedStream[Any]:
        """Lease `spec`, start `make(instance)` and pull its first item while errors can still
        become a clean HTTP status."""
        stack = contextlib.ExitStack()
        try:
            instance = stack.enter_context(self.runtime.lease(spec))
            it = make(instance)
            first = next(it, _END)
        except BaseException:
            stack.close()
            raise
        return LeasedStream(first, it, stack)

    # -- text ------------------------------------------------------------------------------
    def _check_params(self, params: GenerationParams, n: int) -> GenerationParams:
        if not 0 <= params.temperature <= 2:
            raise InvalidRequestError("temperature must be between 0 and 2", param="temperature")
        if not 0 < params.top_p <= 1:
            raise InvalidRequestError("top_p must be greater than 0 and at most 1", param="top_p")
        if params.max_tokens is not None and params.max_tokens < 1:
            raise InvalidRequestError("max_tokens must be at least 1", param="max_tokens")
        if not 1 <= n <= MAX_CHOICES:
            raise InvalidRequestError(f"n must be between 1 and {MAX_CHOICES}", param="n")
        if len(params.stop) > MAX_STOP or any(not s for s in params.stop):
            raise InvalidRequestError(f"stop takes up to {MAX_STOP} non-empty strings", param="stop")
        rf = params.response_format
        if rf is not None:
            kind = rf.get("type")
            if kind not in ("text", "json_object", "json_schema"):
                raise InvalidRequestError(
                    "response_format.type must be text, json_object or json_schema", param="response_format"
                )
            if kind == "json_schema" and not isinstance(rf.get("schema"), dict):
                raise InvalidRequestError("json_schema needs a 'schema' object", param="response_format")
            if kind == "text":
                params = replace(params, response_format=None)
        if params.max_tokens is None:
            params = replace(params, max_tokens=self.settings.default_max_tokens)
        return params

    def _check_messages(self, messages: list[Message]) -> None:
        if not messages:
            raise InvalidRequestError("messages must contain at least one message", param="messages")
        for i, m in enumerate(messages):
            if m.role not in ROLES:
                raise InvalidRequestError(
                    f"messages[{i}].role must be one of {', '.join(ROLES)}", param=f"messages[{i}].role"
                )
            if not isinstance(m.content, str):
                raise InvalidRequestError("message content must be text", param=f"messages[{i}].content")

    def _generate(
        self, spec: ModelSpec, prompt_of: Any, params: GenerationParams, n: int, suffix: str | None
    ) -> LeasedStream[tuple[int, TextDelta]]:
        def run(instance: Any) -> Iterator[tuple[int, TextDelta]]:
            if params.response_format and not instance.supports_grammar:
                raise InvalidRequestError(
                    f"model '{spec.id}' cannot enforce response_format", param="response_format"
                )
            if suffix is not None and not instance.supports_fim:
                raise InvalidRequestError(
                    f"model '{spec.id}' does not support fill-in-the-middle (suffix)", param="suffix"
                )
            prompt, stops = prompt_of(instance)
            for i in range(n):
                seed = None if params.seed is None else params.seed + i
                p = replace(params, seed=seed, stop=[*params.stop, *stops])
                for delta in instance.generate(prompt, p, suffix=suffix):
                    yield i, delta

        return self._stream(spec, run)

    def stream_chat(
        self, messages: list[Message], model: str | None = None, params: GenerationParams | None = None, n: int = 1
    ) -> LeasedStream[tuple[int, TextDelta]]:
        """Stream (choice index, delta) pairs for a chat; choices run one after another."""
        self._check_messages(messages)
        params = self._check_params(params or GenerationParams(), n)
        spec = self.catalog.resolve(model, "text")
        return self._generate(spec, lambda inst: inst.chat_prompt(messages), params, n, None)

    def stream_complete(
        self,
        prompt: str,
        model: str | None = None,
        params: GenerationParams | None = None,
        n: int = 1,
        suffix: str | None = None,
    ) -> LeasedStream[tuple[int, TextDelta]]:
        if not isinstance(prompt, str):
            raise InvalidRequestError("prompt must be a string", param="prompt")
        params = self._check_params(params or GenerationParams(), n)
        spec = self.catalog.resolve(model, "text")
        return self._generate(spec, lambda inst: (prompt, []), params, n, suffix)

    @staticmethod
    def collect(stream: Iterator[tuple[int, TextDelta]], n: int = 1) -> list[TextResult]:
        texts: list[list[str]] = [[] for _ in range(n)]
        ends: list[TextDelta | None] = [None] * n
        for i, delta in stream:
            texts[i].append(delta.text)
            if delta.finish_reason:
                ends[i] = delta
        results = []
        for parts, end in zip(texts, ends):
            usage = (end.usage if end else None) or Usage()
            results.append(TextResult("".join(parts), end.finish_reason if end else "stop", usage))
        return results

    def chat(self, messages: list[Message], model: str | None = None, params: GenerationParams | None = None,
             n: int = 1) -> list[TextResult]:
        return self.collect(self.stream_chat(messages, model, params, n), n)

    def complete(self, prompt: str, model: str | None = None, params: GenerationParams | None = None,
                 n: int = 1, suffix: str | None = None) -> list[TextResult]:
        return self.collect(self.stream_complete(prompt, model, params, n, suffix), n)

    # -- embeddings ------------------------------------------------------------------------
    def embed(self, inputs: str | list[str], model: str | None = None,
              dimensions: int | None = None) -> tuple[ModelSpec, EmbeddingResult]:
        texts = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise InvalidRequestError("input must be a non-empty string or list of strings", param="input")
        if len(texts) > 2048:
            raise InvalidRequestError("input takes at most 2048 items", param="input")
        spec = self.catalog.resolve(model, "embedding")
        with self.runtime.lease(spec) as instance:
            if dimensions is not None and dimensions != instance.dimensions:
                raise InvalidRequestError(
                    f"model '{spec.id}' makes {instance.dimensions}-dimensional embeddings and cannot "
                    f"shorten them to {dimensions}",
                    param="dimensions",
                )
            return spec, instance.embed(texts)

    # -- speech ----------------------------------------------------------------------------
    def speak(self, text: str, model: str | None = None, voice: str | None = None, speed: float = 1.0,
              fmt: str = "wav") -> tuple[ModelSpec, str, LeasedStream[bytes]]:
        """Synthesize `text`: (spec, content type, stream of encoded audio bytes)."""
        from .audio import codec

        if not isinstance(text, str) or not text.strip():
            raise InvalidRequestError("input must be non-empty text", param="input")
        if len(text) > MAX_SPEECH_CHARS:
            raise InvalidRequestError(f"input is longer than {MAX_SPEECH_CHARS} characters", param="input")
        if not 0.25 <= speed <= 4.0:
            raise InvalidRequestError("speed must be between 0.25 and 4.0", param="speed")
        if fmt not in codec.SUPPORTED_SPEECH_FORMATS:
            raise InvalidRequestError(
                f"response_format must be one of {', '.join(codec.SUPPORTED_SPEECH_FORMATS)}",
                param="response_format",
            )
        spec = self.catalog.resolve(model, "speech")

        def run(instance: Any) -> Iterator[bytes]:
            if voice and voice not in OPENAI_VOICES and voice not in instance.voices and voice != spec.id:
                raise InvalidRequestError(
                    f"voice '{voice}' is not available; use one of {', '.join(OPENAI_VOICES)}", param="voice"
                )
            yield from codec.encode_stream(instance.synthesize(text, speed=speed), instance.sample_rate, fmt)

        return spec, codec.CONTENT_TYPES[fmt], self._stream(spec, run)

    # -- transcription ---------------------------------------------------------------------
    def transcribe(self, audio: bytes, model: str | None = None, *, language: str | None = None,
                   prompt: str | None = None, task: str = "transcribe", word_timestamps: bool = False,
                   temperature: float = 0.0) -> tuple[ModelSpec, Transcript]:
        """Transcribe (or, with task="translate", translate to English) audio in any container."""
        from .audio import codec

        if task not in ("transcribe", "translate"):
            raise InvalidRequestError("task must be transcribe or translate", param="task")
        if len(audio) > self.settings.max_upload_mb * 2**20:
            raise PayloadTooLargeError(
                f"audio is {len(audio) / 2**20:.1f} MB, over the {self.settings.max_upload_mb:g} MB limit",
                param="file",
            )
        if not 0 <= temperature <= 1:
            raise InvalidRequestError("temperature must be between 0 and 1", param="temperature")
        spec = self.catalog.resolve(model, "transcription", task="translation" if task == "translate" else None)
        samples = codec.decode(audio)  # decode outside the model's slot: it is ffmpeg's work
        with self.runtime.lease(spec) as instance:
            return spec, instance.transcribe(
                samples, language=language, prompt=prompt, task=task,
                word_timestamps=word_timestamps, temperature=temperature,
            )
