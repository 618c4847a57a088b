"""The one front door below the server, the CLI, the Python API and pipelines.

A call names a model (or none, or an OpenAI name), is validated here once with the parameter's
name in every error, resolved through the catalog, and run on a leased instance from the runtime.
Streams are primed before they are returned, so errors (unknown model, context overflow,
overload) surface before a server has sent its first byte.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, Generic, TypeVar

from .catalog import Catalog, ModelSpec
from .catalog.catalog import DEFAULT_FIELDS, OPENAI_NAMES
from .config import Settings, load_settings
from .errors import InvalidRequestError, PayloadTooLargeError
from .governance.policy import ContentPolicy
from .router.meter import Charge, Meter, current
from .runtime import ModelManager
from .types import (
    EmbeddingResult,
    GenerationParams,
    ImageParams,
    ImageResult,
    Message,
    ProgressFn,
    TextDelta,
    TextResult,
    Transcript,
    Usage,
    VideoParams,
    VideoResult,
)

log = logging.getLogger("omniforge.service")

T = TypeVar("T")
_END = object()

AUTO = "auto"  # the model name that asks the router to choose
CHARS_PER_SPOKEN_SECOND = 15.0  # for the estimate of a speech request's length
MAX_CHOICES = 8  # n above this is refused: each choice is a full generation on one CPU model
MAX_STOP = 4  # as OpenAI
MAX_SPEECH_CHARS = 4096  # as OpenAI
OPENAI_VOICES = (
    "alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse",
    "marin", "cedar",
)
ROLES = ("system", "developer", "user", "assistant", "tool")
MAX_IMAGES = 10  # n for images, as OpenAI
MAX_CHAT_IMAGES = 16  # per message
MAX_CHAT_IMAGE_SIDE = 2048  # images in chat are shrunk to this before a model sees them
MAX_SEED = 2**32 - 1
MAX_STEPS = 150
# OpenAI's image quality names -> a factor on the model's default step count
QUALITY_STEPS = {"low": 0.5, "medium": 1.0, "standard": 1.0, "auto": 1.0, "high": 2.0, "hd": 2.0}
DESCRIBE_PROMPT = "Describe this image in one sentence."
DESCRIBE_EXAMPLES = (  # shown to a chat model that reads facts instead of pixels
    ("[Image 1: size: 256x256 pixels (square)\ncolours: black 85%, purple 15%\ntext: none found\n"
     "shapes: a small purple square at the top, on a black background]\n" + DESCRIBE_PROMPT,
     "A small purple square near the top of a black picture."),
    ("[Image 1: size: 400x300 pixels (landscape)\ncolours: green 70%, white 30%\ntext: \"GARDEN CAFE\"]\n"
     + DESCRIBE_PROMPT, 'A green and white sign that reads "GARDEN CAFE".'),
)


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
                "default_translation_model", "default_embedding_model", "default_image_model",
                "default_video_model", "default_vision_model",
            )
        }
        self.catalog = Catalog(self.settings.catalog_path, defaults)
        self.runtime = runtime or ModelManager(self.settings)
        self.meter = Meter(self.settings)
        self.policy = ContentPolicy.from_settings(self.settings)  # a bad policy file fails here, at start
        self._router: Any = None
        self._videos: Any = None
        self._pipelines: Any = None
        self._videos_lock = threading.Lock()  # guards the lazily created job queues

    def close(self) -> None:
        if self._videos is not None:
            self._videos.close()
        if self._pipelines is not None:
            self._pipelines.close(wait=False)
        self.runtime.close()
        self.meter.close()

    # -- models ----------------------------------------------------------------------------
    def models(self) -> list[ModelSpec]:
        return self.catalog.all()

    def model(self, model_id: str) -> ModelSpec:
        return self.catalog.get(model_id)

    @property
    def router(self) -> Any:
        """The router behind model "auto" (router/router.py), made on first use."""
        with self._videos_lock:
            if self._router is None:
                from .router.router import Router

                self._router = Router.for_service(self)
            return self._router

    def routes(self, model: str | None, modality: str, task: str | None = None) -> bool:
        """Whether the router chooses: the request asks for "auto", or names no model and the default is "auto"."""
        if model == AUTO:
            return True
        field = "default_translation_model" if task == "translation" else DEFAULT_FIELDS[modality]
        if model not in (None, "", "default"):
            if model not in OPENAI_NAMES or self.catalog.knows(model):
                return False
            field = OPENAI_NAMES[model]  # an OpenAI name stands for a default, which may be "auto"
        return self.catalog.defaults.get(field) == AUTO

    def pick(self, model: str | None, modality: str, task: str | None = None, **features: Any) -> ModelSpec:
        """The model for a request: `model` resolved by the catalog, or for "auto" the router's
        choice for a request with these features (RouteRequest fields)."""
        if not self.routes(model, modality, task):
            return self.catalog.resolve(model, modality, task=task)
        from .router.router import RouteRequest

        return self.catalog.get(self.router.route(RouteRequest(modality=modality, task=task, **features)).model)

    def preload(self, model_ids: list[str]) -> None:
        for model_id in model_ids:
            self.runtime.load(self.catalog.get(model_id))  # refuses models whose terms are not accepted

    def check_license(self, spec: ModelSpec) -> None:
        """Refuse a model whose license terms the configuration has not accepted."""
        spec.require_accepted(self.settings.accept_licenses)

    @contextlib.contextmanager
    def _lease(self, spec: ModelSpec, charges: list[Charge] | None = None, **quantities: Any) -> Iterator[Any]:
        """Hold a slot of `spec` for a request: admitted against the budgets with an estimate of
        `quantities` (see Profile.estimate), timed while held, settled by the meter. `charges`, if
        given, receives the charge (to add tokens to it)."""
        self.check_license(spec)  # before the meter charges anything
        charge = self.meter.admit(spec, **quantities)
        if charges is not None:
            charges.append(charge)
        held = 0.0
        try:
            with self.runtime.lease(spec) as instance:
                start = time.perf_counter()
                try:
                    yield instance
                finally:
                    held = time.perf_counter() - start
        finally:
            self.meter.used(charge, held)

    def _stream(self, spec: ModelSpec, make: Any, charges: list[Charge] | None = None,
                **quantities: Any) -> LeasedStream[Any]:
        """Lease `spec`, start `make(instance)` and pull its first item while errors can still
        become a clean HTTP status."""
        stack = contextlib.ExitStack()
        try:
            instance = stack.enter_context(self._lease(spec, charges, **quantities))
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
            if len(m.images) > MAX_CHAT_IMAGES:
                raise InvalidRequestError(f"messages[{i}] has {len(m.images)} images; at most {MAX_CHAT_IMAGES}",
                                          param=f"messages[{i}].content")
            size = sum(len(b) for b in (*m.images, *m.audio))
            if size > self.settings.max_upload_mb * 2**20:
                raise PayloadTooLargeError(
                    f"messages[{i}] attachments are {size / 2**20:.1f} MB, over the "
                    f"{self.settings.max_upload_mb:g} MB limit",
                    param=f"messages[{i}].content",
                )

    def _hear(self, messages: list[Message]) -> list[Message]:
        """Audio attached to messages becomes its transcript (the chat models here do not hear)."""
        out = []
        for m in messages:
            if m.audio:
                heard = [self.transcribe(clip)[1].text.strip() for clip in m.audio]
                said = "\n".join(f"(spoken) {t}" for t in heard if t)
                m = replace(m, content="\n".join(x for x in (m.content, said) if x), audio=[])
            out.append(m)
        return out

    def _see(self, messages: list[Message], accepts_images: bool) -> tuple[list[Message], list[Any]]:
        """Images for a model that sees them, decoded in order; for one that does not, what the
        vision model finds in each image, as text in its message."""
        from .imaging import decode_image

        images: list[Any] = []
        out = []
        for i, m in enumerate(messages):
            facts = []
            for k, data in enumerate(m.images):
                img = decode_image(data, f"messages[{i}].content")
                img.thumbnail((MAX_CHAT_IMAGE_SIDE, MAX_CHAT_IMAGE_SIDE))  # bounds memory per image
                if accepts_images:
                    images.append(img)
                else:  # analysed and dropped one at a time
                    facts.append(f"[Image {k + 1}: {self.analyse(img)}]")
            if facts:
                m = replace(m, content="\n".join([*facts, m.content]).strip(), images=[])
            out.append(m)
        return out, images

    def _generate(
        self, spec: ModelSpec, prompt_of: Any, params: GenerationParams, n: int, suffix: str | None,
        prompt_chars: int = 0,
    ) -> LeasedStream[tuple[int, TextDelta]]:
        charges: list[Charge] = []

        def run(instance: Any) -> Iterator[tuple[int, TextDelta]]:
            if params.response_format and not instance.supports_grammar:
                raise InvalidRequestError(
                    f"model '{spec.id}' cannot enforce response_format", param="response_format"
                )
            if suffix is not None and not instance.supports_fim:
                raise InvalidRequestError(
                    f"model '{spec.id}' does not support fill-in-the-middle (suffix)", param="suffix"
                )
            can_mark = bool(getattr(instance, "supports_watermark", False))
            if params.watermark and not can_mark:
                raise InvalidRequestError(f"model '{spec.id}' cannot watermark its text (llama.cpp models can)",
                                          param="watermark")
            marking = can_mark and (params.watermark or self.settings.text_watermark)
            prompt, stops, images = prompt_of(instance)
            for i in range(n):
                seed = None if params.seed is None else params.seed + i
                p = replace(params, seed=seed, stop=[*params.stop, *stops], watermark=marking)
                extra = {"images": images} if images else {}
                screen = self.policy.screen("output")
                for delta in instance.generate(prompt, p, suffix=suffix, **extra):
                    screen.feed(delta.text)
                    if delta.finish_reason and delta.usage and charges:
                        self.meter.tokens(charges[0], delta.usage.prompt_tokens if i == 0 else 0,
                                          delta.usage.completion_tokens)
                    yield i, delta

        out_tokens = n * (params.max_tokens or self.settings.default_max_tokens)
        return self._stream(spec, run, charges, input_tokens=prompt_chars // 4 + 1, output_tokens=out_tokens)

    def stream_chat(
        self, messages: list[Message], model: str | None = None, params: GenerationParams | None = None, n: int = 1
    ) -> LeasedStream[tuple[int, TextDelta]]:
        """Stream (choice index, delta) pairs for a chat; choices run one after another."""
        self._check_messages(messages)
        params = self._check_params(params or GenerationParams(), n)
        self._screen([m.content for m in messages], "input", "prompt", "messages")
        spec = self.pick(model, "text", "chat", output_tokens=params.max_tokens or self.settings.default_max_tokens,
                          input_tokens=sum(len(m.content) if isinstance(m.content, str) else 0 for m in messages) // 4,
                          images_in=sum(len(m.images) for m in messages))
        if any(m.audio for m in messages):
            messages = self._hear(messages)
        images: list[Any] = []
        if any(m.images for m in messages):
            # Analyse before the chat model's lease, so it is not held while another model works.
            messages, images = self._see(messages, self._sees(spec))
            self._screen_images(images, "input", "messages")  # a model that sees: read the text it will see
        if self._redacts():
            private = self._private([m.content for m in messages])
            messages = [replace(m, content=text) for m, text in zip(messages, private)]

        def prompt_of(instance: Any) -> tuple[str, list[str], list[Any]]:
            return (*instance.chat_prompt(messages), images)

        chars = sum(len(m.content) if isinstance(m.content, str) else 0 for m in messages)
        return self._generate(spec, prompt_of, params, n, None, chars)

    def _sees(self, spec: ModelSpec) -> bool:
        """Whether the chat model takes images itself (it may depend on its weights: ask it)."""
        with self.runtime.lease(spec) as instance:
            return bool(instance.accepts_images)

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
        self._screen([prompt, suffix or ""], "input", "prompt", "prompt")
        if self._redacts():
            prompt, suffix = self._private([prompt])[0], suffix if suffix is None else self._private([suffix])[0]
        spec = self.pick(model, "text", "completion", input_tokens=len(prompt) // 4,
                          output_tokens=params.max_tokens or self.settings.default_max_tokens)
        return self._generate(spec, lambda inst: (prompt, [], []), params, n, suffix, len(prompt) + len(suffix or ""))

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
        self._screen(texts, "input", "input", "input")
        texts = self._private(texts)
        spec = self.pick(model, "embedding", input_tokens=sum(len(t) for t in texts) // 4)
        charges: list[Charge] = []
        with self._lease(spec, charges, input_tokens=sum(len(t) for t in texts) // 4 + 1) as instance:
            if dimensions is not None and dimensions != instance.dimensions:
                raise InvalidRequestError(
                    f"model '{spec.id}' makes {instance.dimensions}-dimensional embeddings and cannot "
                    f"shorten them to {dimensions}",
                    param="dimensions",
                )
            result = instance.embed(texts)
            self.meter.tokens(charges[0], result.prompt_tokens, 0)
            return spec, result

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
        self._screen(text, "input", "speech input", "input")
        spec = self.pick(model, "speech")

        def run(instance: Any) -> Iterator[bytes]:
            if voice and voice not in OPENAI_VOICES and voice not in instance.voices and voice != spec.id:
                raise InvalidRequestError(
                    f"voice '{voice}' is not available; use one of {', '.join(OPENAI_VOICES)}", param="voice"
                )
            yield from codec.encode_stream(instance.synthesize(text, speed=speed), instance.sample_rate, fmt)

        return spec, codec.CONTENT_TYPES[fmt], self._stream(spec, run, audio_seconds=len(text) / CHARS_PER_SPOKEN_SECOND)

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
        spec = self.pick(model, "transcription", "translation" if task == "translate" else None,
                          audio_in_seconds=len(audio) / 32_000)
        samples = codec.decode(audio)  # decode outside the model's slot: it is ffmpeg's work
        with self._lease(spec, audio_seconds=len(samples) / 16_000) as instance:  # decode() gives 16 kHz
            transcript = instance.transcribe(
                samples, language=language, prompt=prompt, task=task,
                word_timestamps=word_timestamps, temperature=temperature,
            )
        self._screen(transcript.text, "output", "transcript", "file")
        return spec, transcript

    # -- images ----------------------------------------------------------------------------
    def _check_image_params(self, params: ImageParams) -> None:
        if not isinstance(params.prompt, str):
            raise InvalidRequestError("prompt must be a string", param="prompt")
        if not 1 <= params.n <= MAX_IMAGES:
            raise InvalidRequestError(f"n must be between 1 and {MAX_IMAGES}", param="n")
        if params.steps is not None and not 1 <= params.steps <= MAX_STEPS:
            raise InvalidRequestError(f"steps must be between 1 and {MAX_STEPS}", param="steps")
        if params.guidance is not None and not 0 <= params.guidance <= 50:
            raise InvalidRequestError("guidance must be between 0 and 50", param="guidance")
        if not 0 < params.strength <= 1:
            raise InvalidRequestError("strength must be greater than 0 and at most 1", param="strength")
        if params.seed is not None and not 0 <= params.seed <= MAX_SEED:
            raise InvalidRequestError(f"seed must be between 0 and {MAX_SEED}", param="seed")
        if not params.prompt.strip() and params.image is None:
            raise InvalidRequestError("prompt must not be empty", param="prompt")
        if params.quality is not None and params.quality not in QUALITY_STEPS:
            raise InvalidRequestError(f"quality must be one of {', '.join(QUALITY_STEPS)}", param="quality")

    @staticmethod
    def _fit_image(spec: ModelSpec, instance: Any, params: ImageParams) -> ImageParams:
        """Fill in the model's default size and refuse sizes and prompts the model cannot take."""
        width = params.width or (params.image.width if params.image is not None else instance.default_size[0])
        height = params.height or (params.image.height if params.image is not None else instance.default_size[1])
        if params.image is not None and not (params.width or params.height):
            # an input image keeps its size, rounded down to what the model can make
            mult = instance.size_multiple
            scale = min(1.0, instance.max_size / max(width, height))
            width = max(mult, int(width * scale) // mult * mult)
            height = max(mult, int(height * scale) // mult * mult)
        for name, value in (("width", width), ("height", height)):
            if value % instance.size_multiple or not instance.size_multiple <= value <= instance.max_size:
                raise InvalidRequestError(
                    f"size {width}x{height} is not possible with '{spec.id}': width and height must be "
                    f"multiples of {instance.size_multiple} between {instance.size_multiple} and "
                    f"{instance.max_size} (default {instance.default_size[0]}x{instance.default_size[1]})",
                    param="size",
                )
        limit = instance.max_prompt_tokens
        for field_name in ("prompt", "negative_prompt"):
            text = getattr(params, field_name)
            count = instance.prompt_tokens(text) if (limit and text) else None
            if count is not None and count > limit:
                raise InvalidRequestError(
                    f"{field_name} is {count} tokens but the text encoder of '{spec.id}' reads at most "
                    f"{limit}; shorten it (the rest would be cut off)",
                    param=field_name,
                    code="prompt_too_long",
                )
        if params.image is not None and not instance.supports_image_to_image:
            raise InvalidRequestError(f"model '{spec.id}' cannot edit images", param="image")
        if params.mask is not None and not instance.supports_inpainting:
            raise InvalidRequestError(f"model '{spec.id}' cannot inpaint (edit with a mask)", param="mask")
        if params.image is not None and (params.image.width, params.image.height) != (width, height):
            from PIL import Image

            params = replace(
                params,
                image=params.image.resize((width, height), Image.Resampling.LANCZOS),
                mask=None if params.mask is None else params.mask.resize((width, height), Image.Resampling.NEAREST),
            )
        steps = params.steps
        if steps is None:
            steps = max(1, round(instance.default_steps * QUALITY_STEPS.get(params.quality or "auto", 1.0)))
        return replace(params, width=width, height=height, steps=min(steps, MAX_STEPS))

    def generate_image(self, params: ImageParams, model: str | None = None,
                       progress: ProgressFn | None = None) -> tuple[ModelSpec, ImageResult]:
        """Text-to-image; with params.image image-to-image, with params.mask too inpainting."""
        self._check_image_params(params)
        self._screen([params.prompt, params.negative_prompt or ""], "input", "prompt", "prompt")
        if params.image is not None:
            self._screen_images([params.image], "input", "image")
        spec = self.pick(model, "image", image_n=params.n, image_steps=params.steps,
                          image_size=f"{params.width}x{params.height}" if params.width and params.height else None)
        pixels = params.width * params.height if params.width and params.height else None
        with self._lease(spec, images=params.n, pixels=pixels, steps=params.steps) as instance:
            params = self._fit_image(spec, instance, params)
            result = instance.generate(params, progress)
        self._screen_images(result.images, "output")
        return spec, result

    def edit_image(self, image: bytes, prompt: str, mask: bytes | None = None, model: str | None = None,
                   progress: ProgressFn | None = None, **options: Any) -> tuple[ModelSpec, ImageResult]:
        """OpenAI's image edit: repaint the mask's transparent area (or the image's), or, with
        no mask and an opaque image, redraw the whole image after the prompt."""
        from .imaging import edit_inputs

        self._check_upload(len(image) + len(mask or b""), "image")
        rgb, area = edit_inputs(image, mask)
        return self.generate_image(ImageParams(prompt=prompt, image=rgb, mask=area, **options), model, progress)

    def image_variations(self, image: bytes, model: str | None = None, progress: ProgressFn | None = None,
                         **options: Any) -> tuple[ModelSpec, ImageResult]:
        """New images like `image`: image-to-image guided by what the house vocabulary reads in it."""
        from .house.checker import read_scene
        from .house.scenes import ATTRIBUTES, Caption
        from .imaging import decode_image

        self._check_upload(len(image), "image")
        rgb = decode_image(image)
        reading = read_scene(rgb)
        prompt = Caption(**{a: getattr(reading, a) for a in ATTRIBUTES}).text() if reading is not None else ""
        spec = self.pick(model, "image")
        if not prompt and spec.backend == "house-image":
            raise InvalidRequestError(
                f"'{spec.id}' can only vary images it can read: one shape of its vocabulary on a plain background",
                param="image",
            )
        options.setdefault("strength", 0.6)
        return self.generate_image(ImageParams(prompt=prompt, image=rgb, **options), spec.id, progress)

    def _check_upload(self, size: int, param: str) -> None:
        if size > self.settings.max_upload_mb * 2**20:
            raise PayloadTooLargeError(
                f"{param} is {size / 2**20:.1f} MB, over the {self.settings.max_upload_mb:g} MB limit", param=param
            )

    # -- PII (governance/pii.py) -------------------------------------------------------------------
    def _redacts(self) -> bool:
        """Whether this request's prompts lose their personal data before the model: the request's
        x-omniforge-pii header, else its key's mode, else the pii_redact_model setting."""
        usage = current()
        for mode in (usage.pii if usage else "", usage.record.pii if usage and usage.record else ""):
            if mode:
                return mode == "redact"
        return self.settings.pii_redact_model

    def _private(self, texts: list[str]) -> list[str]:
        """`texts` with names, emails, phones, cards, IBANs and addresses replaced by <ENTITY>, when
        this request redacts (counts go on the request for its audit record); else as they are."""
        if not self._redacts():
            return texts
        from .governance.pii import PiiGuard, counts

        guard = PiiGuard(self.settings.pii_entities or None, self.settings.pii_threshold)
        out, found = [], []
        for text in texts:
            redacted, findings = guard.redact(text)
            out.append(redacted)
            found.extend(findings)
        usage = current()
        if usage is not None and found:
            with usage.lock:
                for entity, n in counts(found).items():
                    usage.pii_found[entity] = usage.pii_found.get(entity, 0) + n
        return out

    # -- content policy (governance/policy.py) ---------------------------------------------------
    def _screen(self, texts: str | list[str], stage: str, source: str, param: str | None = None) -> None:
        """Every text in and out passes here: verdicts recorded, ContentPolicyError on a block."""
        if self.policy.active:
            self.policy.check(texts, stage, source, param)

    def _screen_images(self, images: list[Any], stage: str, param: str | None = None) -> None:
        """The text the vision model reads in `images`, screened (only while the policy has rules)."""
        if not (self.policy.active and self.policy.ocr and images):
            return
        spec = self.pick(None, "vision", images_in=len(images))
        with self._lease(spec, images=len(images)) as instance:
            read = getattr(instance, "read_text", None)
            if read is None:
                log.warning("content policy: vision model %s cannot read text; images are not screened", spec.id)
                return
            texts = ["\n".join(read(img)) for img in images]
        self.policy.check(texts, stage, "image text", param)

    # -- vision ----------------------------------------------------------------------------
    def analyse(self, image: Any, model: str | None = None, prompt: str | None = None) -> str:
        """What the vision model measures in `image` (PIL image or encoded bytes), as text."""
        from .imaging import decode_image

        if isinstance(image, bytes | bytearray):
            self._check_upload(len(image), "image")
            image = decode_image(bytes(image))
        spec = self.pick(model, "vision", images_in=1)
        with self._lease(spec, images=1) as instance:
            found = instance.analyse(image, prompt)
        self._screen(found, "input", "image text", "image")  # what a chat model will read of the image
        return found

    def describe(self, image: bytes, model: str | None = None, prompt: str | None = None,
                 params: GenerationParams | None = None) -> TextResult:
        """A description of `image` by the chat model (which sees it, or reads what the vision
        model found in it)."""
        params = params or GenerationParams(temperature=0.0, max_tokens=80)
        message = Message("user", prompt or DESCRIBE_PROMPT, images=[image])
        spec = self.pick(model, "text")
        # A small model that reads facts instead of pixels needs to be shown what to do with them.
        shown = [] if self._sees(spec) else [
            Message(role, text) for q, a in DESCRIBE_EXAMPLES for role, text in (("user", q), ("assistant", a))
        ]
        return self.chat([*shown, message], spec.id, params)[0]

    # -- pipelines -------------------------------------------------------------------------
    @property
    def pipelines(self) -> Any:
        """The pipeline runner over the job store in home (created on first use)."""
        with self._videos_lock:
            if self._pipelines is None:
                from .pipelines.artifacts import ArtifactStore
                from .pipelines.engine import PipelineRunner
                from .pipelines.store import PipelineStore

                folder = self.settings.home / "pipelines"
                store = PipelineStore(folder / "jobs.db")
                self._pipelines = PipelineRunner(self, store, ArtifactStore(folder / "artifacts", store))
            return self._pipelines

    # -- provenance ------------------------------------------------------------------------
    def label(self, data: bytes, media_type: str, model_id: str, prompt: str | None = None) -> bytes:
        """A generated file as it leaves omniforge: with a signed C2PA manifest naming the model and
        marking it AI-generated (images also watermarked), unless the `provenance` setting is off."""
        if not self.settings.provenance:
            return data
        import hashlib

        from .governance.provenance import label

        digest = hashlib.sha256(prompt.encode()).hexdigest() if prompt else None
        return label(data, media_type, model_id, self.settings, prompt_hash=digest)

    def encode_image(self, img: Any, fmt: str, model_id: str, prompt: str | None = None) -> bytes:
        """A generated image as a file (png, jpeg, webp): encoded, then labelled."""
        from .imaging import encode_image

        return self.label(encode_image(img, fmt), f"image/{fmt}", model_id, prompt)

    # -- video -----------------------------------------------------------------------------
    def generate_video(self, params: VideoParams, model: str | None = None,
                       progress: ProgressFn | None = None) -> tuple[ModelSpec, VideoResult]:
        """One video, made now (the /v1/videos jobs and pipeline steps call this on their own threads)."""
        self._screen([params.prompt, params.negative_prompt or ""], "input", "prompt", "prompt")
        spec = self.pick(model, "video", video_seconds=params.seconds or 15.0)
        with self._lease(spec, video_seconds=params.seconds or 15.0) as instance:
            result = instance.generate(params, progress, self)
        self._screen(result.narration or [], "output", "narration")
        result.mp4 = self.label(result.mp4, "video/mp4", spec.id, params.prompt)
        return spec, result

    @property
    def videos(self) -> Any:
        """The video job queue (created on first use; resumes the job list from disk)."""
        with self._videos_lock:
            if self._videos is None:
                from .video.jobs import VideoJobs

                self._videos = VideoJobs(self, self.settings.home / "videos")
            return self._videos
