"""Bearer-key auth for every route but /health: settings.api_keys and the key store, endpoint scopes, requests per minute.

A pure ASGI middleware rather than a route dependency, so routes FastAPI adds itself (/docs,
/openapi.json) and WebSockets are covered too. Keys are on when settings.api_keys is set or the
store (<home>/keys.db) holds any key, revoked ones included: revoking the last key locks the
server rather than opening it. On success the request's state carries `api_key` (the token, for
metering, which stores only its id) and `key_record` (its scopes, for the meter's model checks).
A refused /v1 request (401, 403, 429) gets its own audit record here, since nothing inside sees it.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import Settings
from ..errors import AuthenticationError, OmniforgeError, PermissionDeniedError
from ..governance.audit import AuditLog
from ..governance.keys import KeyRecord, KeyStore, RateLimiter, admin_record
from .audit import AUDITED_PREFIX, append_shielded, refusal
from .errors import error_response

UNAUTHENTICATED_PATHS = frozenset({"/health"})


class KeyAuth:
    def __init__(self, app: ASGIApp, settings: Settings, store: KeyStore, limiter: RateLimiter | None = None,
                 audit: AuditLog | None = None) -> None:
        self.app = app
        self.audit = audit  # refusals of /v1 requests are audited too
        self.admin = [(k.encode(), admin_record(k)) for k in settings.api_keys]
        self.store = store
        self.limiter = limiter or RateLimiter()

    def keys_on(self) -> bool:
        return bool(self.admin) or self.store.has_keys(active_only=False)

    def _record(self, token: str) -> KeyRecord | None:
        found = None
        for secret, record in self.admin:  # compare with every settings key: no early exit
            if hmac.compare_digest(token.encode(), secret):
                found = record
        return found or self.store.lookup(token)

    def authorize(self, scope: Scope) -> tuple[str, KeyRecord]:
        """The request's token and key record; raises 401, 403 or 429."""
        header = dict(scope.get("headers", ())).get(b"authorization", b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationError(
                "You didn't provide an API key. Send it in the Authorization header: 'Authorization: Bearer YOUR_KEY'."
            )
        record = self._record(token)
        if record is None:
            raise AuthenticationError("Incorrect API key provided (or it was revoked).")
        path = scope["path"]
        if not record.allows_endpoint(path):
            raise PermissionDeniedError(
                f"API key {record.name!r} ({record.id}) may not call {path}: it is scoped to "
                f"{', '.join(record.endpoints)}")
        self.limiter.take_request(record.id, record.rpm)
        return token, record

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in UNAUTHENTICATED_PATHS or not self.keys_on():
            await self.app(scope, receive, send)
            return
        try:
            token, record = self.authorize(scope)
        except OmniforgeError as err:
            await self._audit_refusal(scope, err)
            if scope["type"] == "websocket" and "websocket.http.response" not in scope.get("extensions", {}):
                await send({"type": "websocket.close", "code": 1008})  # the server can only refuse the handshake
                return
            await error_response(err)(scope, receive, send)  # a WebSocket handshake gets the status and JSON too
            return
        state = scope.setdefault("state", {})
        state["api_key"] = token  # metering charges the key's id (never stores the token)
        state["key_record"] = record
        await self.app(scope, receive, send)


    async def _audit_refusal(self, scope: Scope, err: OmniforgeError) -> None:
        if self.audit is None or not scope.get("path", "").startswith(AUDITED_PREFIX):
            return
        header = dict(scope.get("headers", ())).get(b"authorization", b"").decode("latin-1")
        token = header.partition(" ")[2].strip() or None
        await append_shielded(self.audit.append, refusal(scope, err.status_code, f"{err.code}: {str(err)[:300]}", token))


__all__ = ["UNAUTHENTICATED_PATHS", "KeyAuth"]
