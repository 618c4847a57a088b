"""The FastAPI app factory: OpenAI's wire format in front of the one Service.

The app owns the HTTP concerns only: a bound on request bodies, API keys with scopes and rate
limits (server/auth.py), metering and budgets (server/metering.py), the tamper-evident audit log
(server/audit.py), metrics, the threadpool that blocking model work runs in, and one error
handler (server/errors.py).
Everything about models (which one, when to load, queues) belongs to the Service below it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator

import anyio
import anyio.to_thread
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..config import Settings, load_settings
from ..errors import PayloadTooLargeError
from ..governance.audit import AuditLog
from ..governance.keys import KeyStore
from ..service import Service
from . import errors
from .audit import Auditing
from .auth import KeyAuth
from .errors import BodyTooLarge, error_response
from .metering import Metering
from .metrics import Metrics, MetricsMiddleware
from .routes import (
    advise,
    audio,
    chat,
    completions,
    embeddings,
    health,
    images,
    models,
    pipelines,
    usage,
    verify,
    videos,
    voice,
)

log = logging.getLogger("omniforge.server")

MIN_THREADS = 64  # blocking model work waits in threads; a queue for one model must not starve others
DRAIN_CAP_BYTES = 64 * 2**20  # an oversized body is read and dropped up to this much, so the client sees the 413
UNAUTHENTICATED_PATHS = frozenset({"/health"})


class BodyLimit:
    """Refuse request bodies over `limit_bytes` with 413: by Content-Length before reading, and by
    counting what arrives (chunked uploads, or a Content-Length that lies)."""

    def __init__(self, app: ASGIApp, limit_bytes: int) -> None:
        self.app = app
        self.limit = limit_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                with contextlib.suppress(ValueError):
                    declared = int(value)
        if declared is not None and declared > self.limit:
            await self._drain(receive)
            err = PayloadTooLargeError(
                f"request body is {declared / 2**20:.1f} MB, over the {self.limit / 2**20:g} MB limit "
                "(setting max_upload_mb)",
            )
            await error_response(err)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, counted, send)

    async def _drain(self, receive: Receive) -> None:
        drained = 0
        while drained <= DRAIN_CAP_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                return


def create_app(service: Service | None = None, settings: Settings | None = None) -> FastAPI:
    """The OpenAI-compatible app over `service` (built from `settings` when not given)."""
    owns_service = service is None
    if service is None:
        service = Service(settings or load_settings())
    settings = service.settings if settings is None else settings

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(limiter.total_tokens, MIN_THREADS, settings.max_queue * len(service.models()) + 16)
        resumed = await anyio.to_thread.run_sync(lambda: service.pipelines.resume_interrupted())
        if resumed:
            log.info("resuming %d interrupted pipeline run(s): %s", len(resumed), ", ".join(resumed))
        for model_id in settings.preload:
            t0 = time.perf_counter()
            await anyio.to_thread.run_sync(service.preload, [model_id])
            log.info("preloaded %s in %.1f s", model_id, time.perf_counter() - t0)
        try:
            yield
        finally:
            app.state.audit.close()
            if owns_service:
                await anyio.to_thread.run_sync(service.close)

    app = FastAPI(
        title="omniforge",
        version=__version__,
        description="OpenAI-compatible API over open-weight models on this machine",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.settings = settings
    app.state.metrics = Metrics(service)
    app.state.started = int(time.time())
    errors.install(app)
    for module in (models, chat, completions, embeddings, audio, images, videos, pipelines, voice, usage, advise,
                   verify, health):
        app.include_router(module.router)
    # Outermost last: limit the body before anything reads it; count every request.
    app.add_middleware(BodyLimit, limit_bytes=int(settings.max_upload_mb * 2**20))
    app.state.audit = AuditLog.for_home(settings.home, retention_days=settings.audit_retention_days,
                                        redact=settings.audit_redact)
    app.add_middleware(Auditing, log=app.state.audit, meter=service.meter, settings=settings)  # inside Metering
    app.add_middleware(Metering, meter=service.meter)  # inside the key check: it knows the key
    app.state.keys = KeyStore(settings.home / "keys.db")
    app.add_middleware(KeyAuth, settings=settings, store=app.state.keys, limiter=service.meter.limiter,
                       audit=app.state.audit)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app
