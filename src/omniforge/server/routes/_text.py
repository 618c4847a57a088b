"""What chat and completions share: sampling parameters from the wire, refusing the options
omniforge cannot honour by name, and summing usage over choices."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...errors import InvalidRequestError
from ...types import GenerationParams, TextDelta, Usage
from ..protocol import CompletionUsage


def stops(stop: str | list[str] | None) -> list[str]:
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else list(stop)


def params(
    *,
    max_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    seed: int | None,
    stop: str | list[str] | None,
    response_format: dict[str, Any] | None = None,
    watermark: bool | None = None,
) -> GenerationParams:
    """GenerationParams from the fields a client set; omniforge's defaults for the rest."""
    p = GenerationParams(max_tokens=max_tokens, seed=seed, stop=stops(stop), response_format=response_format,
                         watermark=bool(watermark))
    if temperature is not None:
        p.temperature = temperature
    if top_p is not None:
        p.top_p = top_p
    return p


def refuse_unsupported(**options: Any) -> None:
    """Options OpenAI has and omniforge cannot honour: a clear 400 rather than a silent ignore.
    A value equal to OpenAI's default (0, empty, false) is accepted."""
    for name, value in options.items():
        if value in (None, 0, 0.0, False, {}, [], "none", "auto"):
            continue
        raise InvalidRequestError(f"'{name}' is not supported by omniforge's text models", param=name)


def n_of(n: int | None) -> int:
    return 1 if n is None else n


@dataclass
class UsageSum:
    """Usage over all choices of a request: the prompt counted once, completions summed."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish: dict[int, str] = field(default_factory=dict)

    def add(self, index: int, delta: TextDelta) -> None:
        if delta.finish_reason:
            self.finish[index] = delta.finish_reason
            usage = delta.usage or Usage()
            self.prompt_tokens = max(self.prompt_tokens, usage.prompt_tokens)
            self.completion_tokens += usage.completion_tokens

    def wire(self, **cost: Any) -> CompletionUsage:
        """OpenAI's usage, plus omniforge's cost fields when given (metering.cost_fields)."""
        return CompletionUsage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            total_tokens=self.prompt_tokens + self.completion_tokens,
            **cost,
        )
