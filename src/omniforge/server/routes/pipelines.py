"""Pipelines over HTTP: list recipes, start runs, follow them (JSON or server-sent events), cancel
them, and download the artifacts they made.

A run's binary inputs (audio, image, document) travel as base64 `data:` URLs in the JSON body, or
as http(s) URLs when `allow_remote_urls` is on (fetched by governance/fetch.py; never a server path);
runs live in the SQLite job store under home, so a restarted server still answers for them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, StreamingResponse

from ...errors import InvalidRequestError, NotFoundError
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


def _binary_input(value: Any, typ: str, where: str, settings: Any, runner: Any) -> Any:
    """A binary input as the server takes it: a data: URL, an http(s) URL (fetched only with
    allow_remote_urls, never from private addresses) or an artifact reference; a document may also
    be plain text. Never a path: the server does not read its own files for a client."""
    if not isinstance(value, str):
        return value  # an artifact reference or a wrong type: the runner checks it
    if value.startswith("data:"):
        return decode_data_url(value, where)
    if value.strip().lower().startswith(("http://", "https://")):
        from ...governance.fetch import fetch_remote

        return fetch_remote(value.strip(), settings, int(settings.max_upload_mb * 2**20), param=where)
    if typ == "document":  # the document's text itself
        return runner.artifacts.put(value.encode(), "text/plain").ref()
    raise InvalidRequestError(f"{where} ({typ}) must be a base64 data: URL (or an http(s) URL when the server "
                              "allows remote URLs)", param=where)


@router.post("/v1/pipelines/{name}/runs")
async def create_run(name: str, body: PipelineRunRequest, request: Request) -> Any:
    from ...pipelines.recipe import all_recipes
    from ...pipelines.steps import BINARY

    service = service_of(request)
    known = await blocking(all_recipes, service.settings.home)
    if name not in known:  # names only: a path would make the server read its own files
        raise NotFoundError(f"no recipe named '{name}'; known: {', '.join(sorted(known))}", param="recipe")
    runner = await blocking(lambda: service.pipelines)
    recipe = known[name]
    inputs: dict[str, Any] = {}
    for key, value in (body.inputs or {}).items():
        spec = recipe.inputs.get(key)
        if spec is not None and spec.type in BINARY:
            value = await blocking(_binary_input, value, spec.type, f"inputs.{key}", service.settings, runner)
        inputs[key] = value
    job_id = await blocking(runner.submit, recipe, inputs)
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
