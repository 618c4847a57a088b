"""POST /v1/advise: a use case (plain words or its fields) in, the advisor's answer out as JSON.

    {"use_case": "a chatbot that answers customer questions from our FAQ"}
    {"use_case": {"name": "...", "tasks": ["chat", "retrieval"], "volumes": {"requests_per_month": 5000}}}
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ...router.advisor import advise
from ..protocol import RequestModel
from . import blocking, service_of

router = APIRouter(tags=["advise"])


class AdviseRequest(RequestModel):
    use_case: str | dict[str, Any]


@router.post("/v1/advise")
async def create_advice(body: AdviseRequest, request: Request) -> Any:
    advice = await blocking(advise, service_of(request), body.use_case)
    return advice.to_dict()
