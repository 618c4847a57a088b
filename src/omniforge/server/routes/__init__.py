"""Route modules, one per endpoint group, and the few helpers they share.

A route translates OpenAI's wire format to a Service call and back; it never touches a backend
or the runtime, and runs every blocking call in the threadpool.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.to_thread
from fastapi import Request, UploadFile

from ... import __version__
from ...errors import PayloadTooLargeError, UnsupportedMediaError
from ..metrics import MODEL_HEADER

if TYPE_CHECKING:
    from ...catalog import ModelSpec
    from ...service import Service
    from ..metrics import Metrics

T = TypeVar("T")
SYSTEM_FINGERPRINT = f"omniforge-{__version__}"


def service_of(request: Request) -> Service:
    return request.app.state.service


def metrics_of(request: Request) -> Metrics:
    return request.app.state.metrics


def served_by(request: Request, spec: ModelSpec) -> dict[str, str]:
    """Remember which model serves this request (for errors and metrics); its response headers."""
    request.state.model_id = spec.id
    return {MODEL_HEADER: spec.id}


async def blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run model work in the threadpool so the event loop keeps serving other requests."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


async def read_upload(request: Request, file: UploadFile, param: str, what: str) -> bytes:
    """An uploaded file's bytes, refused if empty or over `max_upload_mb` (as actually read)."""
    limit = int(service_of(request).settings.max_upload_mb * 2**20)
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLargeError(f"{what} is over the {limit / 2**20:g} MB limit (setting max_upload_mb)", param=param)
    if not data:
        raise UnsupportedMediaError(f"{what} is empty", param=param)
    return data
