"""Per-request metering on the server: who asked (API key, project), what it cost (headers and usage fields), settled into the ledger.

A pure ASGI middleware inside the API-key check: it opens the request's usage in the Service's
meter (current for every thread the request runs in), adds `x-omniforge-cost` (usd, compute
seconds, energy) to responses whose model work is finished when they start (not to streams: their
last usage chunk carries it), and settles the request once its response is sent or it fails. It
also reads the request's PII mode (`x-omniforge-pii: redact|off`) onto the usage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import InvalidRequestError
from ..governance.keys import PII_MODES
from ..router.meter import current
from .errors import error_response

if TYPE_CHECKING:
    from ..router.meter import Meter

COST_HEADER = "x-omniforge-cost"
ROUTE_HEADER = "x-omniforge-route"  # model "auto": what the router chose and why
PROJECT_HEADERS = (b"openai-project", b"x-omniforge-project")
PII_HEADER = "x-omniforge-pii"  # per request: redact (personal data out of prompts before the model) or off
UNMETERED = ("/v1/usage", "/v1/models", "/health", "/metrics", "/docs", "/openapi.json")


class Metering:
    def __init__(self, app: ASGIApp, meter: Meter) -> None:
        self.app = app
        self.meter = meter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] not in ("http", "websocket") or not path.startswith("/v1/") or path.startswith(UNMETERED):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", ()))
        project = next((headers[h].decode("latin-1").strip() for h in PROJECT_HEADERS if headers.get(h)), None)
        state = scope.get("state") or {}
        pii = headers.get(PII_HEADER.encode(), b"").decode("latin-1").strip().lower()
        if pii not in PII_MODES:
            err = InvalidRequestError(f"header {PII_HEADER} must be redact or off, not {pii!r}", param=PII_HEADER)
            await error_response(err)(scope, receive, send)
            return
        usage, token = self.meter.begin(state.get("api_key"), project or None, f"{scope.get('method', 'WS')} {path}",
                                        record=state.get("key_record"))
        usage.pii = pii

        async def metered_send(message: Message) -> None:
            if message["type"] == "http.response.start" and usage.reserved and usage.active == 0:
                cost = self.meter.cost(usage)
                message = {**message, "headers": [*message.get("headers", []),
                                                  (COST_HEADER.encode(), cost.header().encode())]}
            await send(message)

        try:
            await self.app(scope, receive, metered_send)
        finally:
            self.meter.end(usage, token)


def cost_fields(meter: Meter) -> dict[str, Any]:
    """The current request's cost so far, as usage fields: cost (USD), compute_seconds, energy_wh."""
    usage = current()
    if usage is None:
        return {}
    cost = meter.cost(usage).rounded()
    return {"cost": cost["usd"], "compute_seconds": cost["compute_seconds"], "energy_wh": cost["energy_wh"]}


__all__ = ["COST_HEADER", "ROUTE_HEADER", "Metering", "cost_fields"]
