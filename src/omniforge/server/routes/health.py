"""GET /health (liveness, never behind auth) and GET /metrics (Prometheus text format)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ... import __version__
from . import metrics_of, service_of

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(request: Request) -> dict[str, object]:
    runtime = service_of(request).runtime
    return {
        "status": "ok",
        "version": __version__,
        "models_loaded": [
            {"id": m.id, "modality": m.modality, "memory_bytes": m.memory_bytes, "active": m.active,
             "waiting": m.waiting}
            for m in runtime.loaded()
        ],
    }


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    body, content_type = metrics_of(request).render()
    return Response(body, media_type=content_type)
