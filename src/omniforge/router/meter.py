"""Metering: every model lease is admitted against the budgets with an estimate, timed, and settled into the ledger at the request's end.

The server opens a `RequestUsage` per HTTP request (key, project, endpoint) and makes it current
for everything the request runs, in whatever thread (a context variable). Service leases call
`admit` (estimate from the model's profile, budget check, reservation), `used` (measured seconds
of holding the model, tokens) and, for work outside any request (CLI, Python API, background
jobs), settle their own one-lease request at once. Compute-seconds are the time a request holds
a model slot, without the queue wait and the load.
"""

from __future__ import annotations

import contextvars
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..governance.keys import RateLimiter, check_lease
from .cost import Cost, CostModel
from .ledger import Amounts, Ledger, key_id, parse_budgets
from .profiles import ProfileCache

if TYPE_CHECKING:
    from ..catalog.spec import ModelSpec
    from ..config import Settings
    from ..governance.keys import KeyRecord

_CURRENT: contextvars.ContextVar[RequestUsage | None] = contextvars.ContextVar("omniforge_request", default=None)


@dataclass
class ModelUse:
    spec: ModelSpec
    seconds: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass
class RequestUsage:
    """What one request used so far, per model."""

    id: str
    key: str | None = None
    project: str | None = None
    endpoint: str | None = None
    reserved: bool = False
    settled: bool = False
    active: int = 0  # leases held right now
    models: dict[str, ModelUse] = field(default_factory=dict)
    record: KeyRecord | None = None  # the API key's scopes and limits (server requests with a key)
    policy: list[dict] = field(default_factory=list)  # content policy verdicts (governance/policy.py)
    pii: str = ""  # the x-omniforge-pii header: "redact" or "off" before the model; "" the key or setting decides
    pii_found: dict[str, int] = field(default_factory=dict)  # entities redacted from prompts, for the audit record
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def tokens(self) -> tuple[int, int]:
        return (sum(m.input_tokens for m in self.models.values()), sum(m.output_tokens for m in self.models.values()))


def current() -> RequestUsage | None:
    return _CURRENT.get()


@dataclass
class Charge:
    """One admitted lease: the request it belongs to and whether it settles itself (no request around it)."""

    usage: RequestUsage
    spec: ModelSpec
    owned: bool


class Meter:
    def __init__(self, settings: Settings) -> None:
        self.home = Path(settings.home)
        self.cost_model = CostModel.from_settings(settings)
        self.ledger = Ledger(self.home / "usage" / "ledger.db", parse_budgets(settings.budgets))
        self.profiles = ProfileCache(self.home)  # shared with the router (Router.for_service)
        self.limiter = RateLimiter()  # per-key requests/tokens per minute, shared with server.auth.KeyAuth

    def close(self) -> None:
        self.ledger.close()

    # -- requests -------------------------------------------------------------------------------
    def begin(self, key: str | None = None, project: str | None = None, endpoint: str | None = None,
              record: KeyRecord | None = None) -> tuple[RequestUsage, contextvars.Token[RequestUsage | None]]:
        """Open a request and make it current (undo with `end`)."""
        usage = RequestUsage(f"req_{uuid.uuid4().hex}", key_id(key), project, endpoint, record=record)
        return usage, _CURRENT.set(usage)

    def end(self, usage: RequestUsage, token: contextvars.Token[RequestUsage | None] | None = None) -> None:
        if token is not None:
            _CURRENT.reset(token)
        self.settle(usage)

    # -- leases ---------------------------------------------------------------------------------
    def admit(self, spec: ModelSpec, **quantities: Any) -> Charge:
        """Check the budgets with this lease's estimate and reserve it; raises BudgetExceededError."""
        usage = current()
        owned = usage is None
        if usage is None:
            usage = RequestUsage(f"req_{uuid.uuid4().hex}", endpoint="local")
        tokens_in = int(quantities.get("input_tokens", 0))
        tokens_out = int(quantities.get("output_tokens", 0))
        check_lease(usage.record, spec.id, spec.modality, tokens_in + tokens_out, self.limiter)  # 403 / 429
        seconds = self.profiles.get(spec).estimate(**quantities)
        cost = self.cost_model.of_request(spec, seconds, tokens_in, tokens_out)
        with usage.lock:
            first = not usage.reserved
            self.ledger.reserve(usage.id, Amounts(tokens_in, tokens_out, cost.compute_seconds, cost.usd,
                                                  cost.energy_wh),
                                key=usage.key, project=usage.project, endpoint=usage.endpoint, model=spec.id,
                                modality=spec.modality, first=first)
            usage.reserved = True
            usage.models.setdefault(spec.id, ModelUse(spec))
            usage.active += 1
        return Charge(usage, spec, owned)

    def used(self, charge: Charge, seconds: float) -> None:
        """The lease is over: add the seconds it held the model (settles it when it is its own request)."""
        with charge.usage.lock:
            charge.usage.models[charge.spec.id].seconds += seconds
            charge.usage.active -= 1
        if charge.owned:
            self.settle(charge.usage)

    def tokens(self, charge: Charge, input_tokens: int, output_tokens: int) -> None:
        with charge.usage.lock:
            use = charge.usage.models[charge.spec.id]
            use.input_tokens += input_tokens
            use.output_tokens += output_tokens

    def cost(self, usage: RequestUsage) -> Cost:
        total = Cost()
        with usage.lock:
            for use in usage.models.values():
                total = total + self.cost_model.of_request(use.spec, use.seconds, use.input_tokens, use.output_tokens)
        return total

    def settle(self, usage: RequestUsage) -> None:
        """Record what the request measured (once; a request that reserved nothing leaves no row)."""
        with usage.lock:
            if usage.settled or not usage.reserved:
                usage.settled = True
                return
            usage.settled = True
            models = list(usage.models.values())
        cost = self.cost(usage)
        tokens_in, tokens_out = usage.tokens()
        main = max(models, key=lambda m: m.seconds) if models else None
        self.ledger.settle(usage.id, Amounts(tokens_in, tokens_out, cost.compute_seconds, cost.usd, cost.energy_wh),
                           model="+".join(m.spec.id for m in models) or None,
                           modality=main.spec.modality if main else None)



__all__ = ["Charge", "Meter", "ModelUse", "RequestUsage", "current"]
