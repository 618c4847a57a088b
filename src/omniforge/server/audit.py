"""Auditing: one hash-chained audit record per API request (who, what endpoint and model, which weights, what it cost), never its content.

A pure ASGI middleware that must sit *inside* Metering (added to the app before it), so the
request's usage (router.meter.current()) is the one Metering opened. It hashes the request body
as received and the response body as sent (streams included) incrementally, keeps only the small
top-level scalar parameters of JSON requests (model, temperature, max_tokens, size, voice ...;
never messages, input or prompt text; with pii_redact_audit, personal data in them and in the error
text is redacted and counted under "pii"), and appends the record just before the response's last
body message goes out (so no client sees a complete response that has no record), or when the
request failed or the client went away. Model digests and the append (an fsync) run in a worker
thread; the first request to a model hashes its weights once (cached by path, mtime and size).

Content policy verdicts (governance/policy.py) come from the request's usage, where the Service
puts them; a layer in front of the app may add its own in `scope["state"]["policy_verdicts"]`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..governance.audit import AuditLog, model_digest
from ..router.ledger import key_id
from ..router.meter import current

if TYPE_CHECKING:
    from ..config import Settings
    from ..router.meter import Meter, RequestUsage

log = logging.getLogger("omniforge.audit")

AUDITED_PREFIX = "/v1/"
PARAMS_MAX_BODY = 2**20  # JSON bodies up to 1 MB are parsed for their parameters
PARAM_MAX_CHARS = 200  # a longer string is content, not a parameter
CONTENT_FIELDS = frozenset({"messages", "input", "prompt", "text", "instructions", "suffix", "query", "documents",
                            "negative_prompt", "system", "content", "file", "image", "mask", "stop", "tools",
                            "functions", "response_format_schema"})
ERROR_BODY_MAX = 16 * 2**10  # an error response is kept this far to name its type and code
PROJECT_HEADERS = (b"openai-project", b"x-omniforge-project")


def request_params(body: bytes) -> dict[str, Any]:
    """Top-level scalar fields of a JSON object body: model, temperature, max_tokens, n, size, voice ..."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items()
            if k not in CONTENT_FIELDS and (v is None or isinstance(v, (bool, int, float))
                                            or (isinstance(v, str) and len(v) <= PARAM_MAX_CHARS))}


def error_summary(status: int, body: bytes) -> str | None:
    """'type/code: message' of an OpenAI-shaped error body (the status alone when it is not one)."""
    if status < 400:
        return None
    try:
        err = json.loads(body)["error"]
        code = f"/{err['code']}" if err.get("code") else ""
        return f"{err.get('type', 'error')}{code}: {str(err.get('message', ''))[:300]}"
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return f"HTTP {status}"


class _Exchange:
    """What one request sent and received, hashed as it passes."""

    def __init__(self, json_body: bool) -> None:
        self.input = hashlib.sha256()
        self.output = hashlib.sha256()
        self.body: bytearray | None = bytearray() if json_body else None
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.error_body = bytearray()
        self.finished = False  # the last body byte went out
        self.disconnected = False

    def received(self, message: Message) -> None:
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            self.input.update(chunk)
            if self.body is not None:
                self.body += chunk
                if len(self.body) > PARAMS_MAX_BODY:
                    self.body = None  # too big to parse: hash only
        elif message["type"] == "http.disconnect":
            self.disconnected = True

    def sent(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            self.headers = {k.lower(): v for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            chunk = message.get("body", b"")
            self.output.update(chunk)
            if self.status >= 400 and len(self.error_body) < ERROR_BODY_MAX:
                self.error_body += chunk[: ERROR_BODY_MAX - len(self.error_body)]
            if not message.get("more_body", False):
                self.finished = True


class Auditing:
    def __init__(self, app: ASGIApp, log: AuditLog, meter: Meter, settings: Settings) -> None:
        self.app = app
        self.log = log
        self.meter = meter
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not scope.get("path", "").startswith(AUDITED_PREFIX):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await self._session(scope, receive, send)
            return
        headers = dict(scope.get("headers", ()))
        json_body = headers.get(b"content-type", b"").split(b";")[0].strip() == b"application/json"
        exchange = _Exchange(json_body)
        usage = current()
        started = time.time()
        t0 = time.perf_counter()

        async def audited_receive() -> Message:
            message = await receive()
            exchange.received(message)
            return message

        appended = False

        async def record(failure: str | None) -> None:
            nonlocal appended
            if appended:
                return
            appended = True
            entry = self._record(scope, headers, exchange, usage, started, time.perf_counter() - t0, failure)
            await append_shielded(self._append, entry, usage)

        async def audited_send(message: Message) -> None:
            exchange.sent(message)
            if exchange.finished:
                await record(None)  # durable before the client sees the end: no response without its record
            try:
                await send(message)
            except OSError:
                exchange.disconnected = True
                raise

        failure: str | None = None
        try:
            await self.app(scope, audited_receive, audited_send)
        except BaseException as exc:
            failure = _failure(exc)
            raise
        finally:
            await record(failure)

    async def _session(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket session (the voice assistant) is one record, appended when it ends: status 101
        once accepted (or the handshake's refusal), message counts, hashes of all it received and sent."""
        exchange = _Exchange(json_body=False)
        exchange.body = None
        usage = current()
        started, t0 = time.time(), time.perf_counter()
        counts = {"messages_in": 0, "messages_out": 0}
        close_code: int | None = None

        async def audited_receive() -> Message:
            message = await receive()
            if message["type"] == "websocket.receive":
                counts["messages_in"] += 1
                exchange.input.update(message.get("bytes") or (message.get("text") or "").encode())
            return message

        async def audited_send(message: Message) -> None:
            nonlocal close_code
            kind = message["type"]
            if kind == "websocket.accept":
                exchange.status = 101
            elif kind == "websocket.send":
                counts["messages_out"] += 1
                exchange.output.update(message.get("bytes") or (message.get("text") or "").encode())
            elif kind == "websocket.close":
                close_code = int(message.get("code", 1000))
                exchange.status = exchange.status or 403  # closed before accepting: a refused handshake
            elif kind.startswith("websocket.http.response"):
                exchange.sent({**message, "type": kind.replace("websocket.", "", 1)})
            await send(message)

        failure: str | None = None
        try:
            await self.app(scope, audited_receive, audited_send)
        except BaseException as exc:
            failure = _failure(exc)
            raise
        finally:
            exchange.finished = True
            headers = dict(scope.get("headers", ()))
            entry = self._record(scope, headers, exchange, usage, started, time.perf_counter() - t0, failure)
            entry["params"] = {**counts, "close_code": close_code}
            if entry["error"] is None and close_code not in (None, 1000, 1001):
                entry["error"] = f"closed with code {close_code}"
            await append_shielded(self._append, entry, usage)

    def _record(self, scope: Scope, headers: dict[bytes, bytes], exchange: _Exchange, usage: RequestUsage | None,
                started: float, seconds: float, failure: str | None) -> dict[str, Any]:
        state = scope.get("state") or {}
        params = request_params(bytes(exchange.body)) if exchange.body is not None else {}
        status = exchange.status or 500
        error = failure or error_summary(status, bytes(exchange.error_body))
        if error is None and (exchange.disconnected or not exchange.finished):  # ended without its last byte
            error = "client disconnected before the response ended"
        route = None
        if b"x-omniforge-route" in exchange.headers:
            route = {"requested": params.get("model"),
                     "chosen": exchange.headers.get(b"x-omniforge-model", b"").decode("latin-1") or None,
                     "reason": exchange.headers[b"x-omniforge-route"].decode("latin-1")}
        project = usage.project if usage else next(
            (headers[h].decode("latin-1").strip() for h in PROJECT_HEADERS if headers.get(h)), None)
        return {
            "time": started,
            "request_id": usage.id if usage else None,
            "key_id": usage.key if usage else key_id(state.get("api_key")),
            "project": project,
            "endpoint": scope.get("path"),
            "method": scope.get("method", "WEBSOCKET"),
            "status": status,
            "params": params,
            "input_hash": exchange.input.hexdigest(),
            "output_hash": exchange.output.hexdigest(),
            "route": route,
            "policy": [*(state.get("policy_verdicts") or []), *(usage.policy if usage else [])],
            "error": error,
            "latency_ms": round(seconds * 1000, 1),
        }

    def _append(self, record: dict[str, Any], usage: RequestUsage | None) -> None:
        """Fill in what the models did (digests hash weights on first use), then append: in a worker thread."""
        models = list(usage.models.values()) if usage else []
        record["model"] = "+".join(m.spec.id for m in models) or record["params"].get("model")
        record["model_digest"] = {m.spec.id: _digest(m.spec, self.settings) for m in models}
        cost = self.meter.cost(usage).rounded() if usage else {}
        if usage:
            tokens_in, tokens_out = usage.tokens()
            cost.update(input_tokens=tokens_in, output_tokens=tokens_out)
        record["cost"] = cost
        record["pii"] = dict(usage.pii_found) if usage else {}  # what was redacted from prompts before the model
        if self.settings.pii_redact_audit:
            self._redact(record)
        self.log.append(record)

    def _redact(self, record: dict[str, Any]) -> None:
        """Personal data out of the strings the record keeps (parameters such as `user`, the error
        text, which may quote the request); the entities found are counted under "pii"."""
        from ..governance.pii import PiiGuard, counts

        guard = PiiGuard(self.settings.pii_entities or None, self.settings.pii_threshold)
        # Every string but the model name: a client may put anything in voice, user or language.
        record["params"], found = guard.redact_value(record["params"], skip_keys=frozenset({"model"}))
        if record.get("error"):
            record["error"], in_error = guard.redact(record["error"])
            found += in_error
        for entity, n in counts(found).items():
            record["pii"][entity] = record["pii"].get(entity, 0) + n


def _digest(spec: Any, settings: Settings) -> str | None:
    try:
        return model_digest(spec, settings.cache_dir, settings.home / "audit" / "digests.json")
    except Exception as exc:  # noqa: BLE001 - weights moved or unreadable: say so rather than lose the record
        return f"unavailable: {type(exc).__name__}"


async def append_shielded(append: Any, entry: dict[str, Any], *args: Any) -> None:
    """append(entry, *args) in a worker thread, even when the request was cancelled; a failure is
    logged, never turned into a 500 for a request that was served."""
    with anyio.CancelScope(shield=True):
        try:
            await anyio.to_thread.run_sync(append, entry, *args)
        except Exception:
            log.exception("audit record for %s %s could not be appended", entry.get("method"), entry.get("endpoint"))


def _failure(exc: BaseException) -> str:
    """How a request that raised ends up in its record."""
    if isinstance(exc, anyio.get_cancelled_exc_class()):
        return "client disconnected"
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def refusal(scope: Scope, status: int, error: str, token: str | None) -> dict[str, Any]:
    """The record of a request the key check refused (401, 403, 429) before anything else saw it:
    the presented key's id (a hash, never the key), the endpoint and the reason."""
    headers = dict(scope.get("headers", ()))
    return {
        "time": time.time(), "request_id": None, "key_id": key_id(token) if token else None,
        "project": next((headers[h].decode("latin-1").strip() for h in PROJECT_HEADERS if headers.get(h)), None),
        "endpoint": scope.get("path"), "method": scope.get("method", "WEBSOCKET"), "status": status, "params": {},
        "input_hash": None, "output_hash": None, "route": None, "policy": [], "error": error, "latency_ms": 0.0,
        "model": None, "model_digest": {}, "cost": {},
    }


__all__ = ["Auditing", "append_shielded", "error_summary", "refusal", "request_params"]
