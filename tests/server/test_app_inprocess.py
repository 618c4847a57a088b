"""The app in-process over a fake text model that fails on purpose: an unexpected exception is a
500 in OpenAI's shape (before the stream starts) or an in-band error event (after), and the app
serves the next request. The real-model behaviour is tested against live servers elsewhere."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anyio.to_thread
import pytest
from fastapi.testclient import TestClient

import tests.fakes  # noqa: F401  # registers the fake-broken backend
from omniforge.catalog import ModelSpec
from omniforge.config import load_settings
from omniforge.server import create_app
from omniforge.service import Service


@pytest.fixture
def app_client(tmp_path: Path) -> Iterator[TestClient]:
    service = Service(load_settings())
    service.catalog.add(ModelSpec(id="broken", modality="text", backend="fake-broken", source=str(tmp_path)))
    with TestClient(create_app(service), raise_server_exceptions=False) as c:
        yield c
    service.close()


def _chat(content: str, **extra: object) -> dict:
    return {"model": "broken", "messages": [{"role": "user", "content": content}], **extra}


def test_unexpected_exception_is_a_500_in_openai_shape(app_client: TestClient) -> None:
    r = app_client.post("/v1/chat/completions", json=_chat("fail-now"))
    assert r.status_code == 500
    err = r.json()["error"]
    assert err["type"] == "server_error" and "RuntimeError" in err["message"]
    assert r.headers["x-omniforge-model"] == "broken"
    ok = app_client.post("/v1/chat/completions", json=_chat("hello"))
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == "ok "


def test_failure_after_the_stream_started_is_reported_in_band(app_client: TestClient) -> None:
    with app_client.stream("POST", "/v1/chat/completions", json=_chat("fail-later", stream=True)) as r:
        assert r.status_code == 200
        events = [line.removeprefix("data: ") for line in r.iter_lines() if line.startswith("data: ")]
    assert json.loads(events[1])["choices"][0]["delta"]["content"] == "ok "
    assert json.loads(events[-1])["error"]["type"] == "server_error"
    assert "[DONE]" not in events
    assert app_client.post("/v1/chat/completions", json=_chat("hello")).status_code == 200


def test_metrics_count_errors_by_status(app_client: TestClient) -> None:
    app_client.post("/v1/chat/completions", json=_chat("fail-now"))
    app_client.post("/v1/chat/completions", content=b"{", headers={"Content-Type": "application/json"})
    text = app_client.get("/metrics").text
    assert 'omniforge_requests_total{endpoint="/v1/chat/completions",model="broken",status="500"} 1.0' in text
    assert 'omniforge_requests_total{endpoint="/v1/chat/completions",model="",status="400"} 1.0' in text


def test_the_threadpool_is_raised_so_queued_requests_do_not_starve_others(app_client: TestClient) -> None:
    assert app_client.portal is not None
    tokens = app_client.portal.call(lambda: anyio.to_thread.current_default_thread_limiter().total_tokens)
    assert tokens >= 64
