"""GET /v1/usage: what requests cost, by key, project, model, modality, endpoint, day or month, as JSON or a PNG chart.

With API keys on, a key sees its own usage only (the governance scopes decide who sees all).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from ...errors import InvalidRequestError
from ...router.ledger import key_id
from ...router.report import METRICS, chart_png
from . import blocking, service_of

router = APIRouter(tags=["usage"])


@router.get("/v1/usage")
async def get_usage(
    request: Request,
    group_by: Annotated[str, Query(description="comma-separated: key, project, model, modality, endpoint, "
                                               "day, month")] = "day",
    since: Annotated[str | None, Query(description="first day, YYYY-MM-DD")] = None,
    until: Annotated[str | None, Query(description="last day, YYYY-MM-DD")] = None,
    format: Annotated[str, Query(description="json or png")] = "json",
    metric: Annotated[str, Query(description="what the chart shows: " + ", ".join(METRICS))] = "usd",
) -> Any:
    if format not in ("json", "png"):
        raise InvalidRequestError("format must be json or png", param="format")
    if metric not in METRICS:
        raise InvalidRequestError(f"metric must be one of {', '.join(METRICS)}", param="metric")
    service = service_of(request)
    groups = [g.strip() for g in group_by.split(",") if g.strip()]
    key = key_id(request.scope.get("state", {}).get("api_key"))
    rows = await blocking(service.meter.ledger.usage, groups, key=key, since=since, until=until)
    if format == "png":
        return Response(await blocking(chart_png, rows, groups, metric), media_type="image/png")
    totals = {k: sum(r[k] for r in rows) for k in ("requests", "input_tokens", "output_tokens", "compute_seconds",
                                                   "usd", "energy_wh")}
    return JSONResponse({"object": "list", "group_by": groups, "data": rows, "totals": totals,
                         "prices": service.meter.cost_model.describe()})
