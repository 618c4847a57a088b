"""Bridges between the service's blocking iterators and Starlette's async responses.

Model work is blocking, so every `next()` runs in the threadpool. A stream holds a model lease,
so `LeasedStreamingResponse` closes it however the response ends: finished, failed, or the
client gone (Starlette does not close a body iterator whose client disconnected).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ..errors import OmniforgeError

T = TypeVar("T")
_DONE = object()


def _next(it: Iterator[Any]) -> Any:
    return next(it, _DONE)


async def iterate(it: Iterator[T]) -> AsyncIterator[T]:
    """Pull `it` one item at a time in the threadpool."""
    while True:
        item = await anyio.to_thread.run_sync(_next, it)
        if item is _DONE:
            return
        yield item


def sse(data: dict[str, Any] | str) -> str:
    """One server-sent event as OpenAI frames it."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"data: {payload}\n\n"


def sse_error(err: OmniforgeError) -> str:
    """An error after the stream has started: the openai client raises it as an APIError."""
    return sse(err.to_openai())


class LeasedStreamingResponse(StreamingResponse):
    """A StreamingResponse that calls `on_close` (in the threadpool) once it is over."""

    def __init__(self, content: AsyncIterator[Any], *, on_close: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                aclose = getattr(self.body_iterator, "aclose", None)
                if aclose is not None:
                    await aclose()
                await anyio.to_thread.run_sync(self._on_close)
