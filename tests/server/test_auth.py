"""API keys on the server: every route but /health refuses a request without a key (the routes are
enumerated from the app itself, WebSocket included), store keys are scoped to endpoints (403) and
limited in requests per minute (429 with Retry-After), and revoked or wrong keys get 401.

Two layers: KeyAuth in-process around the real app (runs whatever server/app.py installs), and a
real server with settings keys plus store keys created before it starts. The store-key parts of
the real-server tests need server/app.py to install KeyAuth; they are skipped until it does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse

import omniforge.server.app as app_module
from omniforge.config import Settings, load_settings
from omniforge.governance.keys import KeyStore
from omniforge.server import create_app
from omniforge.server.auth import KeyAuth
from omniforge.service import Service

from .helpers import ServerProcess, assert_openai_error, start_server

SETTINGS_KEY = "sk-auth-admin-test"
WIRED = re.search(r"\bKeyAuth\b", Path(app_module.__file__).read_text()) is not None
needs_wiring = pytest.mark.skipif(not WIRED, reason="server/app.py does not install server.auth.KeyAuth yet")


def _flatten(routes: list, prefix: str = "") -> Iterator[tuple[str, object]]:
    """(full path, route) for every route, through included routers (FastAPI includes them lazily)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _flatten(inner.routes, prefix + getattr(route.include_context, "prefix", ""))
        else:
            yield prefix + route.path, route


def app_routes(settings: Settings) -> list[tuple[str, str]]:
    """(method, path) for every route of the app, path parameters filled in; method "WS" for WebSockets."""
    service = Service(settings)
    try:
        app = create_app(service, settings)
        routes = []
        for path, route in _flatten(app.routes):
            path = re.sub(r"\{[^}]+\}", "dummy", path)
            methods = getattr(route, "methods", None)
            if methods is None:
                routes.append(("WS", path))
            else:
                routes += [(m, path) for m in sorted(methods) if m != "HEAD"]
        return routes
    finally:
        service.close()


def _assert_every_route_refuses(routes: list[tuple[str, str]], request, websocket) -> int:
    checked = 0
    for method, path in routes:
        if path == "/health":
            continue
        if method == "WS":
            assert websocket(path) == 401, path
        else:
            r = request(method, path)
            assert_openai_error(r, 401, "authentication_error", "invalid_api_key")
        checked += 1
    return checked


# -- in-process: KeyAuth around the real app ---------------------------------------------------------

@dataclass
class Keys:
    all: str
    models_only: str
    limited: str
    revoked: str


def _make_keys(store: KeyStore) -> Keys:
    all_, _ = store.create("everything")
    models_only, _ = store.create("models-only", endpoints="/v1/models")
    limited, _ = store.create("limited", rpm=5)
    revoked, rec = store.create("gone")
    store.revoke(rec.id)
    return Keys(all_, models_only, limited, revoked)


@pytest.fixture
def inprocess(tmp_path: Path) -> Iterator[tuple[KeyAuth, Keys]]:
    settings = load_settings(home=tmp_path / "home")
    store = KeyStore(settings.home / "keys.db")
    keys = _make_keys(store)
    service = Service(settings)
    app = KeyAuth(create_app(service, settings), settings, store)
    yield app, keys
    service.close()
    store.close()


def test_inprocess_every_route_refuses_without_a_key(inprocess, tmp_path):
    app, _ = inprocess
    client = TestClient(app, raise_server_exceptions=False)
    routes = app_routes(load_settings(home=tmp_path / "other"))
    assert ("WS", "/v1/voice") in routes and ("GET", "/openapi.json") in routes and len(routes) > 25

    def websocket(path: str) -> int:
        with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect(path):
            pass
        return denied.value.status_code

    assert _assert_every_route_refuses(routes, client.request, websocket) == len(routes) - 1
    assert client.get("/health").status_code == 200


def test_inprocess_scopes_revocation_and_rate(inprocess):
    app, keys = inprocess
    client = TestClient(app, raise_server_exceptions=False)
    auth = lambda k: {"Authorization": f"Bearer {k}"}
    assert client.get("/v1/models", headers=auth(keys.all)).status_code == 200
    assert client.get("/v1/models", headers=auth(keys.models_only)).status_code == 200
    assert client.get("/v1/models/gemma-3-270m", headers=auth(keys.models_only)).status_code == 200
    denied = client.post("/v1/chat/completions", json={}, headers=auth(keys.models_only))
    err = assert_openai_error(denied, 403, "permission_error", "scope_denied")
    assert "/v1/chat/completions" in err["message"] and "/v1/models" in err["message"]
    assert_openai_error(client.get("/docs", headers=auth(keys.models_only)), 403, "permission_error")
    assert_openai_error(client.get("/v1/models", headers=auth(keys.revoked)), 401, "authentication_error")
    assert_openai_error(client.get("/v1/models", headers=auth("of-" + "x" * 32)), 401, "authentication_error")

    async def burst() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            results: list[httpx.Response] = []

            async def one() -> None:
                results.append(await c.get("/v1/models", headers=auth(keys.limited)))

            async with anyio.create_task_group() as tg:
                for _ in range(12):
                    tg.start_soon(one)
            return results

    results = anyio.run(burst)
    codes = sorted(r.status_code for r in results)
    assert codes == [200] * 5 + [429] * 7
    for r in results:
        if r.status_code == 429:
            assert_openai_error(r, 429, "rate_limit_error", "rate_limit_exceeded")
            assert 1 <= int(r.headers["retry-after"]) <= 60


def test_keys_off_when_no_settings_key_and_an_empty_store(tmp_path):
    settings = load_settings(home=tmp_path / "home")
    store = KeyStore(settings.home / "keys.db")
    service = Service(settings)
    try:
        client = TestClient(KeyAuth(create_app(service, settings), settings, store))
        assert client.get("/v1/models").status_code == 200
        _, rec = store.create("first")  # a key appears: auth is on from the next request
        assert client.get("/v1/models").status_code == 401
        store.revoke(rec.id)  # revoking the last key locks the server rather than opening it
        assert client.get("/v1/models").status_code == 401
    finally:
        service.close()
        store.close()


# -- a real server --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Keys]]:
    root = tmp_path_factory.mktemp("auth-server")
    store = KeyStore(root / "home" / "keys.db")  # start_server's home is root/"home"
    keys = _make_keys(store)
    store.close()
    srv = start_server(root, api_keys=SETTINGS_KEY)
    yield srv, keys
    srv.stop()


def test_every_route_of_the_real_server_refuses_without_a_key(keyed, tmp_path):
    srv, _ = keyed
    websockets = pytest.importorskip("websockets")
    from websockets.sync.client import connect

    routes = app_routes(load_settings(home=tmp_path / "routes"))

    def websocket(path: str) -> int:
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused, \
                connect(srv.url.replace("http://", "ws://") + path, open_timeout=30):
            pass
        return refused.value.response.status_code

    with httpx.Client(base_url=srv.url, timeout=60) as anon:
        assert _assert_every_route_refuses(routes, anon.request, websocket) == len(routes) - 1
        assert anon.get("/health").status_code == 200
        ok = anon.get("/v1/models", headers={"Authorization": f"Bearer {SETTINGS_KEY}"})
        assert ok.status_code == 200, ok.text


@needs_wiring
def test_store_keys_on_the_real_server(keyed):
    srv, keys = keyed
    auth = lambda k: {"Authorization": f"Bearer {k}"}
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        assert c.get("/v1/models", headers=auth(keys.all)).status_code == 200
        assert c.get("/v1/models", headers=auth(keys.models_only)).status_code == 200
        assert_openai_error(c.post("/v1/chat/completions", json={}, headers=auth(keys.models_only)),
                            403, "permission_error", "scope_denied")
        assert_openai_error(c.get("/openapi.json", headers=auth(keys.models_only)), 403, "permission_error")
        assert_openai_error(c.get("/v1/models", headers=auth(keys.revoked)), 401, "authentication_error")


@needs_wiring
def test_requests_per_minute_on_the_real_server_under_concurrency(keyed):
    srv, keys = keyed
    with httpx.Client(base_url=srv.url, timeout=60, headers={"Authorization": f"Bearer {keys.limited}"}) as c, \
            ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda _: c.get("/v1/models"), range(12)))
    assert sorted(r.status_code for r in results) == [200] * 5 + [429] * 7
    for r in results:
        if r.status_code == 429:
            assert_openai_error(r, 429, "rate_limit_error", "rate_limit_exceeded")
            assert 1 <= int(r.headers["retry-after"]) <= 60
