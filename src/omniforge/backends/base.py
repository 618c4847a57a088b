"""Capability interfaces every backend implements: one loaded model instance per modality.

A backend module exposes `load(spec, settings) -> ModelInstance` and nothing else global: an
instance is built from its spec alone, so the runtime can host it in-process today and in a
Ray Serve replica later. Capabilities are class attributes the router and server read;
nobody sniffs types.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..types import EmbeddingResult, GenerationParams, Message, TextDelta, Transcript

if TYPE_CHECKING:
    from ..catalog.spec import ModelSpec


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

    @property
    @abstractmethod
    def context_length(self) -> int: ...

    @abstractmethod
    def tokenize(self, text: str) -> list[int]: ...

    @abstractmethod
    def chat_prompt(self, messages: list[Message]) -> tuple[str, list[str]]:
        """Render messages with the model's chat template: (prompt, extra stop sequences)."""

    @abstractmethod
    def generate(self, prompt: str, params: GenerationParams, suffix: str | None = None) -> Iterator[TextDelta]:
        """Stream the completion of `prompt`. The last delta has finish_reason and usage set.

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

