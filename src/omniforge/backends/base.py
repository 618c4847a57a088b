"""Capability interfaces every backend implements: one loaded model instance per modality.

A backend module exposes `load(spec, settings) -> ModelInstance` and nothing else global: an
instance is built from its spec alone, so the runtime can host it in-process today and in a
Ray Serve replica later. Capabilities are class attributes the router and server read;
nobody sniffs types.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..types import (
    EmbeddingResult,
    GenerationParams,
    ImageParams,
    ImageResult,
    Message,
    ProgressFn,
    TextDelta,
    Transcript,
    VideoParams,
    VideoResult,
)

if TYPE_CHECKING:
    from ..catalog.spec import ModelSpec


def completion_budget(n_ctx: int, n_prompt: int, max_tokens: int | None, what: str = "") -> int:
    """Tokens left for a completion after an `n_prompt`-token prompt in an `n_ctx` window;
    ContextLengthExceededError (with OpenAI's wording) when the request cannot fit."""
    from ..errors import ContextLengthExceededError

    if n_prompt >= n_ctx:
        raise ContextLengthExceededError(
            f"This model's maximum context length is {n_ctx} tokens, but the prompt has "
            f"{n_prompt} tokens{what}, leaving no room for a completion. Shorten the prompt.",
            param="messages",
        )
    if max_tokens is not None and n_prompt + max_tokens > n_ctx:
        raise ContextLengthExceededError(
            f"This model's maximum context length is {n_ctx} tokens. However, you requested "
            f"{n_prompt + max_tokens} tokens ({n_prompt} in the prompt, {max_tokens} for "
            "the completion). Reduce the prompt or max_tokens.",
            param="max_tokens",
        )
    return max_tokens if max_tokens is not None else n_ctx - n_prompt


class ModelInstance(ABC):
    """A loaded model. Instances are shared by concurrent requests through the runtime."""

    modality: ClassVar[str]
    # How many requests may run inside this instance at once; the runtime queues the rest.
    concurrency: ClassVar[int] = 1

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    def memory_bytes(self) -> int:
        """Best estimate of the memory this instance holds (weights on disk if nothing better)."""
        return self.spec.size_bytes()

    def close(self) -> None:
        """Free the weights. The runtime calls this when it unloads the model."""


class TextModel(ModelInstance):
    modality = "text"
    supports_fim: bool = False  # fill-in-the-middle (completions `suffix`); may depend on the weights
    supports_grammar: ClassVar[bool] = False  # response_format enforced by grammar
    supports_watermark: ClassVar[bool] = False  # honours GenerationParams.watermark (governance/textmark.py)
    # Takes Message.images itself (a vision-language model). Otherwise the service has a vision
    # model analyse each image and hands the LLM what it found, as text.
    accepts_images: bool = False

    @property
    @abstractmethod
    def context_length(self) -> int: ...

    @abstractmethod
    def tokenize(self, text: str) -> list[int]: ...

    @abstractmethod
    def chat_prompt(self, messages: list[Message]) -> tuple[str, list[str]]:
        """Render messages with the model's chat template: (prompt, extra stop sequences)."""

    @abstractmethod
    def generate(self, prompt: str, params: GenerationParams, suffix: str | None = None,
                 images: list[Any] | None = None) -> Iterator[TextDelta]:
        """Stream the completion of `prompt`. The last delta has finish_reason and usage set.
        `images` (PIL.Image.Image, in order of appearance) only reach models that accept_images;
        `chat_prompt` marks where each goes.

        Raises ContextLengthExceededError before generating when the prompt does not fit.
        """


class SpeechModel(ModelInstance):
    modality = "speech"
    sample_rate: int
    voices: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def synthesize(self, text: str, speed: float = 1.0) -> Iterator[np.ndarray]:
        """Yield mono int16 PCM chunks at `sample_rate`, one per sentence, as they are ready."""


class TranscriptionModel(ModelInstance):
    modality = "transcription"
    multilingual: ClassVar[bool] = False

    @abstractmethod
    def transcribe(
        self,
        audio: np.ndarray,
        *,
        language: str | None = None,
        prompt: str | None = None,
        task: str = "transcribe",
        word_timestamps: bool = False,
        temperature: float = 0.0,
    ) -> Transcript:
        """Transcribe (task="transcribe") or translate to English (task="translate") mono
        float32 audio at 16 kHz."""


class EmbeddingModel(ModelInstance):
    modality = "embedding"
    concurrency = 2

    @property
    @abstractmethod
    def dimensions(self) -> int: ...

    @property
    @abstractmethod
    def max_tokens(self) -> int: ...

    @abstractmethod
    def embed(self, texts: list[str]) -> EmbeddingResult:
        """Normalized embeddings of `texts`, in order."""



class ImageModel(ModelInstance):
    """Makes images: text-to-image always; image-to-image and inpainting where flagged."""

    modality = "image"
    supports_image_to_image: bool = False  # may depend on the weights: set per instance
    supports_inpainting: bool = False
    default_size: tuple[int, int] = (512, 512)  # (width, height)
    size_multiple: int = 8  # width and height must be multiples of this
    max_size: int = 2048
    default_steps: int = 20
    max_prompt_tokens: int | None = None  # the text encoder's limit, if it has one

    def prompt_tokens(self, text: str) -> int | None:
        """How many tokens the text encoder sees for `text` (None if it does not count)."""
        return None

    @abstractmethod
    def generate(self, params: ImageParams, progress: ProgressFn | None = None) -> ImageResult:
        """Make `params.n` images. Sizes and the prompt's length were validated against the
        attributes above by the service; a backend raises InvalidRequestError for what only it
        can check (an unknown scheduler, say)."""


class VideoModel(ModelInstance):
    """Makes a short video from a prompt (and, where flagged, a first frame)."""

    modality = "video"
    supports_image_to_video: bool = False
    default_size: tuple[int, int] = (256, 256)
    max_seconds: float = 60.0

    @abstractmethod
    def generate(self, params: VideoParams, progress: ProgressFn | None = None,
                 context: Any = None) -> VideoResult:
        """Make the video. `context` is the Service, for composite models (a storyboard writes
        scenes with the LLM, draws them with the image model and narrates them)."""


class VisionModel(ModelInstance):
    """Looks at an image and says what is in it, as text an LLM can use."""

    modality = "vision"

    @abstractmethod
    def analyse(self, image: Any, prompt: str | None = None) -> str:
        """Facts about `image` (PIL.Image.Image, RGB) as short plain-text lines."""
