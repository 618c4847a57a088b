"""POST /v1/completions: OpenAI's legacy text completions, whole or streamed.

`prompt` is a string or a list of strings (each gets n choices, indexed prompt-major as OpenAI
does); token-id prompts are refused. `suffix` asks for fill-in-the-middle, which the service
refuses for models without it. `echo` puts the prompt before the text. max_tokens defaults to
16, OpenAI's default for this endpoint.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ...errors import InvalidRequestError
from ...service import MAX_CHOICES, LeasedStream, Service
from ...types import GenerationParams, TextDelta
from ..errors import to_error
from ..metering import cost_fields
from ..metrics import Metrics
from ..protocol import Completion, CompletionChoice, CompletionRequest, CompletionUsage
from ..streaming import LeasedStreamingResponse, iterate, sse, sse_error
from . import SYSTEM_FINGERPRINT, blocking, metrics_of, new_id, now, served_by, service_of
from ._text import UsageSum, n_of, params, refuse_unsupported

router = APIRouter(tags=["completions"])


def _prompts(prompt: Any) -> list[str]:
    if isinstance(prompt, str):
        return [prompt]
    if not prompt:
        raise InvalidRequestError("prompt must not be empty", param="prompt")
    if all(isinstance(p, str) for p in prompt):
        return list(prompt)
    raise InvalidRequestError(
        "prompt as token ids is not supported; send the prompt as text (a string or a list of strings)",
        param="prompt",
    )


class _Prompts:
    """The streams of several prompts, run one after another, as (choice index, delta) pairs.
    The first prompt's stream is primed by the route; the others lease when they start."""

    def __init__(self, service: Service, first: LeasedStream[tuple[int, TextDelta]], rest: list[str],
                 model: str, p: GenerationParams, n: int, suffix: str | None) -> None:
        self.service, self.rest, self.model, self.p, self.n, self.suffix = service, rest, model, p, n, suffix
        self.current: LeasedStream[tuple[int, TextDelta]] | None = first
        self.offset = 0

    def __iter__(self) -> _Prompts:
        return self

    def __next__(self) -> tuple[int, int, TextDelta]:
        """(prompt index, choice index, delta)."""
        while self.current is not None:
            try:
                i, delta = next(self.current)
                return self.offset, self.offset * self.n + i, delta
            except StopIteration:
                self.current.close()
                self.current = None
                if self.rest:
                    prompt = self.rest.pop(0)
                    self.offset += 1
                    self.current = self.service.stream_complete(prompt, self.model, self.p, self.n, self.suffix)
        raise StopIteration

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None


@router.post("/v1/completions", response_model=Completion)
async def create_completion(body: CompletionRequest, request: Request) -> Any:
    service = service_of(request)
    refuse_unsupported(
        frequency_penalty=body.frequency_penalty, presence_penalty=body.presence_penalty,
        logit_bias=body.logit_bias, logprobs=body.logprobs,
    )
    n = n_of(body.n)
    if body.best_of is not None and body.best_of != n:
        raise InvalidRequestError("best_of other than n is not supported", param="best_of")
    if body.stream_options is not None and not body.stream:
        raise InvalidRequestError("stream_options is only allowed when stream is true", param="stream_options")
    prompts = _prompts(body.prompt)
    if len(prompts) * n > MAX_CHOICES:
        raise InvalidRequestError(f"prompts times n must be at most {MAX_CHOICES}", param="prompt")
    p = params(max_tokens=body.max_tokens, temperature=body.temperature, top_p=body.top_p, seed=body.seed,
               stop=body.stop, watermark=body.watermark)
    spec = await blocking(service.pick, body.model, "text")
    headers = served_by(request, spec)
    first = await blocking(service.stream_complete, prompts[0], spec.id, p, n, body.suffix)
    chained = _Prompts(service, first, prompts[1:], spec.id, p, n, body.suffix)
    meta = {"id": new_id("cmpl"), "created": now(), "model": spec.id}
    echo = prompts if body.echo else None
    metrics = metrics_of(request)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return LeasedStreamingResponse(
            _events(chained, meta, echo, include_usage, len(prompts), metrics, service.meter),
            on_close=chained.close,
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    texts, usages = await blocking(_collect, chained, len(prompts) * n, len(prompts))
    usage = _total(usages, **cost_fields(service.meter))
    metrics.count_tokens(spec.id, usage.prompt_tokens, usage.completion_tokens)
    finish = {k: v for u in usages for k, v in u.finish.items()}
    choices = [
        CompletionChoice(
            text=(echo[k // n] if echo else "") + texts[k], index=k, finish_reason=finish.get(k, "stop")
        )
        for k in range(len(texts))
    ]
    result = Completion(**meta, system_fingerprint=SYSTEM_FINGERPRINT, choices=choices, usage=usage)
    return JSONResponse(result.model_dump(), headers=headers)


def _total(usages: list[UsageSum], **cost: Any) -> CompletionUsage:
    prompt = sum(u.prompt_tokens for u in usages)
    completion = sum(u.completion_tokens for u in usages)
    return CompletionUsage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                           **cost)


def _collect(chained: _Prompts, choices: int, prompts: int) -> tuple[list[str], list[UsageSum]]:
    parts: list[list[str]] = [[] for _ in range(choices)]
    usages = [UsageSum() for _ in range(prompts)]
    try:
        for k_prompt, k, delta in chained:
            parts[k].append(delta.text)
            usages[k_prompt].add(k, delta)
    finally:
        chained.close()
    return ["".join(p) for p in parts], usages


async def _events(chained: _Prompts, meta: dict[str, Any], echo: list[str] | None, include_usage: bool,
                  prompts: int, metrics: Metrics, meter: Any) -> AsyncIterator[str]:
    base = {"id": meta["id"], "object": "text_completion", "created": meta["created"], "model": meta["model"],
            "system_fingerprint": SYSTEM_FINGERPRINT}
    n = chained.n

    def chunk(index: int, text: str, finish: str | None = None) -> str:
        event = {**base, "choices": [{"text": text, "index": index, "logprobs": None, "finish_reason": finish}]}
        if include_usage:
            event["usage"] = None
        return sse(event)

    usages = [UsageSum() for _ in range(prompts)]
    started: set[int] = set()
    try:
        async for k_prompt, k, delta in iterate(chained):
            text = delta.text
            if echo and k not in started:
                text = echo[k // n] + text
            started.add(k)
            if text or delta.finish_reason:
                usages[k_prompt].add(k, delta)
                yield chunk(k, text, delta.finish_reason)
        if include_usage:
            yield sse({**base, "choices": [], "usage": _total(usages, **cost_fields(meter)).model_dump()})
        yield "data: [DONE]\n\n"
    except Exception as exc:  # the response has started: report in-band
        yield sse_error(to_error(exc))
    finally:
        total = _total(usages)
        metrics.count_tokens(meta["model"], total.prompt_tokens, total.completion_tokens)
