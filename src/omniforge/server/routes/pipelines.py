"""Pipelines over HTTP: list recipes, start runs, follow them (JSON or server-sent events), cancel
them, and download the artifacts they made.

A run's binary inputs (audio, image, document) travel as base64 `data:` URLs in the JSON body;
runs live in the SQLite job store under home, so a restarted server still answers for them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, StreamingResponse

from ...errors import InvalidRequestError
from ...imaging import decode_data_url
from ..protocol import PipelineRunRequest
from ..streaming import sse
from . import blocking, service_of

router = APIRouter(tags=["pipelines"])

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_POLL_S = 0.25


def _run_json(job: Any) -> dict[str, Any]:
    return {"object": "pipeline.run", **job.to_dict()}


@router.get("/v1/recipes")
async def list_recipes(request: Request) -> Any:
    from ...pipelines.recipe import all_recipes

    recipes = await blocking(all_recipes, service_of(request).settings.home)
    return {"object": "list", "data": [{"object": "recipe", **r.to_dict()} for _, r in sorted(recipes.items())]}


@router.post("/v1/pipelines/{name}/runs")
async def create_run(name: str, body: PipelineRunRequest, request: Request) -> Any:
    runner = await blocking(lambda: service_of(request).pipelines)
    inputs: dict[str, Any] = {}
    for key, value in (body.inputs or {}).items():
        if isinstance(value, str) and value.startswith("data:"):
            value = decode_data_url(value, f"inputs.{key}")
        inputs[key] = value
    job_id = await blocking(runner.submit, name, inputs)
    return _run_json(await blocking(runner.store.get_job, job_id))


@router.get("/v1/pipelines/runs")
async def list_runs(request: Request, recipe: str | None = None, status: str | None = None, limit: int = 20) -> Any:
    runner = await blocking(lambda: service_of(request).pipelines)
    jobs = await blocking(runner.store.list_jobs, status=status, recipe=recipe, limit=max(1, min(limit, 100)))
    return {"object": "list", "data": [_run_json(j) for j in jobs]}


@router.get("/v1/pipelines/runs/{run_id}")
async def get_run(run_id: str, request: Request) -> Any:
    runner = await blocking(lambda: service_of(request).pipelines)
    job = await blocking(runner.store.get_job, run_id)
    steps = await blocking(runner.store.steps, run_id)
    return {**_run_json(job), "steps": steps}


@router.post("/v1/pipelines/runs/{run_id}/cancel")
async def cancel_run(run_id: str, request: Request) -> Any:
    runner = await blocking(lambda: service_of(request).pipelines)
    return _run_json(await blocking(runner.cancel, run_id))


@router.get("/v1/pipelines/runs/{run_id}/events")
async def run_events(run_id: str, request: Request, after: int = 0) -> Any:
    """Server-sent events of the run, from `after` on, until it ends (or the client leaves)."""
    runner = await blocking(lambda: service_of(request).pipelines)
    await blocking(runner.store.get_job, run_id)  # 404 before the stream starts

    async def events() -> AsyncIterator[str]:
        seen = after
        while True:
            for event in await blocking(runner.store.events, run_id, seen):
                seen = event["seq"]
                yield sse({"object": "pipeline.event", "run_id": run_id, **event})
            job = await blocking(runner.store.get_job, run_id)
            if job.finished:
                for event in await blocking(runner.store.events, run_id, seen):  # the last ones
                    seen = event["seq"]
                    yield sse({"object": "pipeline.event", "run_id": run_id, **event})
                yield "data: [DONE]\n\n"
                return
            if await request.is_disconnected():
                return
            await asyncio.sleep(_POLL_S)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@router.get("/v1/artifacts/{sha256}")
async def get_artifact(sha256: str, request: Request) -> Any:
    if not _SHA256.match(sha256):
        raise InvalidRequestError("an artifact id is a sha256 in hex", param="sha256")
    runner = await blocking(lambda: service_of(request).pipelines)
    artifact = await blocking(runner.artifacts.get, sha256)  # NotFoundError -> 404
    return FileResponse(runner.artifacts.path(sha256), media_type=artifact.media_type,
                        filename=artifact.name or f"{sha256[:16]}")
