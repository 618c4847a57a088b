"""Fake model instances for runtime and service tests: real objects with tiny behaviour, no mocks."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omniforge.backends import register_backend
from omniforge.backends.base import TextModel
from omniforge.catalog import ModelSpec
from omniforge.errors import ContextLengthExceededError
from omniforge.types import GenerationParams, Message, TextDelta, Usage


class EchoModel(TextModel):
    """Generates the prompt's words back, one per token; blocks while `gate` is cleared."""

    loads = 0
    closed = 0
    gate = threading.Event()

    def __init__(self, spec: ModelSpec, memory: int = 10 * 2**20) -> None:
        super().__init__(spec)
        self._memory = memory

    @property
    def context_length(self) -> int:
        return 64

    def memory_bytes(self) -> int:
        return self._memory

    def close(self) -> None:
        type(self).closed += 1

    def tokenize(self, text: str) -> list[int]:
        return [len(w) for w in text.split()]

    def chat_prompt(self, messages: list[Message]) -> tuple[str, list[str]]:
        return " ".join(m.content for m in messages), ["STOP"]

    def generate(self, prompt: str, params: GenerationParams, suffix: str | None = None,
                 images: list[Any] | None = None) -> Iterator[TextDelta]:
        words = prompt.split()
        if len(words) > self.context_length:
            raise ContextLengthExceededError(f"{len(words)} tokens > {self.context_length}")
        self.gate.wait(timeout=10)
        out = []
        limit = params.max_tokens or len(words)
        for w in words:
            if w in params.stop:
                break
            if len(out) == limit:
                yield TextDelta("", "length", Usage(len(words), len(out)))
                return
            out.append(w)
            yield TextDelta(w + " ")
        yield TextDelta("", "stop", Usage(len(words), len(out)))


def load_echo(spec: ModelSpec, settings: object) -> EchoModel:
    EchoModel.loads += 1
    return EchoModel(spec, memory=int(spec.options.get("memory_mb", 10)) * 2**20)


register_backend("fake-echo", "text", load_echo)


def echo_spec(model_id: str = "echo", memory_mb: int = 10, source: Path | None = None) -> ModelSpec:
    return ModelSpec(
        id=model_id, modality="text", backend="fake-echo", source=str(source or "/"),
        options={"memory_mb": memory_mb},
    )


class BrokenModel(TextModel):
    """Says "ok" unless the prompt asks it to fail now (before any text) or later (after some)."""

    @property
    def context_length(self) -> int:
        return 512

    def tokenize(self, text: str) -> list[int]:
        return list(range(len(text.split())))

    def chat_prompt(self, messages: list[Message]) -> tuple[str, list[str]]:
        return messages[-1].content, []

    def generate(self, prompt: str, params: GenerationParams, suffix: str | None = None) -> Iterator[TextDelta]:
        if prompt == "fail-now":
            raise RuntimeError("engine exploded")
        yield TextDelta("ok ")
        if prompt == "fail-later":
            raise RuntimeError("engine exploded mid-stream")
        yield TextDelta("", "stop", Usage(1, 1))


register_backend("fake-broken", "text", lambda spec, settings: BrokenModel(spec))
