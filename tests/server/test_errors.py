"""Bad requests get OpenAI's error shape with the right status, and the server serves the next
request: malformed JSON, wrong types, unknown routes, oversized uploads (413), missing or wrong
API keys (401) and overload (503 with Retry-After)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import openai
import pytest

from .helpers import STRICT_KEY, STRICT_UPLOAD_MB, ServerProcess, assert_alive, assert_openai_error

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}


@pytest.mark.parametrize(
    "raw",
    [b"{", b'{"model": "gpt-4o-mini", "messages": [}', b"not json at all", b'{"a": 1,}', "{\"x\": \"\udcff\"}".encode(
        "utf-8", "surrogatepass")],
)
def test_malformed_json_is_400(http: httpx.Client, raw: bytes) -> None:
    r = http.post("/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"})
    assert_openai_error(r, 400, "invalid_request_error")
    assert_alive(http)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**CHAT, "max_tokens": "5"}, "max_tokens"),
        ({**CHAT, "temperature": "hot"}, "temperature"),
        ({**CHAT, "stream": "yes"}, "stream"),
        ({**CHAT, "n": 1.5}, "n"),
        ({**CHAT, "stop": 7}, "stop"),
        ({**CHAT, "messages": "hello"}, "messages"),
        ({**CHAT, "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"model": "gpt-4o-mini"}, "messages"),
        ({**CHAT, "messages": []}, "messages"),
        ({**CHAT, "messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({**CHAT, "temperature": 5}, "temperature"),
        ({**CHAT, "n": 100}, "n"),
        ({**CHAT, "response_format": {"type": "xml"}}, "response_format.type"),
        ({**CHAT, "response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ({**CHAT, "stream_options": {"include_usage": True}}, "stream_options"),
        ({**CHAT, "tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ],
)
def test_wrong_values_and_types_are_400(http: httpx.Client, body: dict, param: str) -> None:
    err = assert_openai_error(http.post("/v1/chat/completions", json=body), 400, "invalid_request_error")
    assert err["param"] == param, err
    assert_alive(http)


def test_unknown_fields_are_ignored_as_openai_does(http: httpx.Client) -> None:
    r = http.post("/v1/embeddings", json={"input": "hi", "model": "all-minilm-l6-v2", "some_future_option": {"a": 1}})
    assert r.status_code == 200, r.text


def test_unknown_model_is_404_everywhere(client: openai.OpenAI, http: httpx.Client) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="hi")
    with pytest.raises(openai.NotFoundError):
        client.audio.speech.create(model="no-such-model", voice="alloy", input="hi")
    assert_alive(http)


def test_unknown_route_and_method(http: httpx.Client) -> None:
    assert_openai_error(http.get("/v1/nothing-here"), 404, "invalid_request_error", "unknown_url")
    assert_openai_error(http.delete("/v1/models"), 405, "invalid_request_error")
    assert_alive(http)


# -- the strict server: auth, upload limit, queue of one ----------------------------------------
def test_auth_required_except_health(strict_server: ServerProcess) -> None:
    with httpx.Client(base_url=strict_server.url, timeout=30) as anon:
        assert anon.get("/health").status_code == 200
        assert_openai_error(anon.get("/v1/models"), 401, "authentication_error")
        for path in ("/metrics", "/docs", "/openapi.json", "/v1/no-such-route"):
            assert_openai_error(anon.get(path), 401, "authentication_error")
        assert_openai_error(anon.post("/v1/chat/completions", json={}), 401, "authentication_error")
        wrong = anon.get("/v1/models", headers={"Authorization": "Bearer sk-wrong"})
        assert_openai_error(wrong, 401, "authentication_error")
        assert_openai_error(anon.get("/v1/models", headers={"Authorization": STRICT_KEY}), 401, "authentication_error")
    bad = openai.OpenAI(base_url=strict_server.base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    good = openai.OpenAI(base_url=strict_server.base_url, api_key=STRICT_KEY, max_retries=0)
    assert any(m.id == "gemma-3-270m" for m in good.models.list().data)


def _big(n: int) -> bytes:
    return b"\0" * n


def test_upload_over_the_limit_is_413(strict_server: ServerProcess, strict_http: httpx.Client) -> None:
    limit = int(STRICT_UPLOAD_MB * 2**20)
    files = {"file": ("big.wav", _big(limit + 4096), "audio/wav")}
    r = strict_http.post("/v1/audio/transcriptions", data={"model": "whisper-1"}, files=files)
    assert_openai_error(r, 413, "invalid_request_error", "payload_too_large")
    # Through the openai client too.
    client = openai.OpenAI(base_url=strict_server.base_url, api_key=STRICT_KEY, max_retries=0)
    with pytest.raises(openai.APIStatusError) as info:
        client.audio.transcriptions.create(model="whisper-1", file=("big.wav", _big(limit + 4096)))
    assert info.value.status_code == 413
    # A JSON body over the limit is refused the same way.
    r = strict_http.post("/v1/embeddings", json={"input": "x" * (limit + 10)})
    assert_openai_error(r, 413, "invalid_request_error", "payload_too_large")
    assert_alive(strict_http)


def test_chunked_upload_over_the_limit_is_413(strict_http: httpx.Client) -> None:
    """No Content-Length to check up front: the bytes are counted as they arrive."""
    limit = int(STRICT_UPLOAD_MB * 2**20)

    def body() -> Iterator[bytes]:
        yield b'{"input": "'
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    r = strict_http.post("/v1/embeddings", content=body(), headers={"Content-Type": "application/json"})
    assert_openai_error(r, 413, "invalid_request_error", "payload_too_large")
    assert_alive(strict_http)


def test_overload_is_503_with_retry_after(strict_http: httpx.Client) -> None:
    """max_queue=1: with one request in the model and one waiting, the rest are refused at once."""
    text = " ".join(f"Sentence number {i} keeps the speech model busy for a while." for i in range(3))
    results: list[httpx.Response] = []
    lock = threading.Lock()

    def speak() -> None:
        r = strict_http.post("/v1/audio/speech", json={"input": text, "response_format": "wav"})
        r.read()
        with lock:
            results.append(r)

    threads = [threading.Thread(target=speak) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    statuses = sorted(r.status_code for r in results)
    assert statuses.count(200) >= 1 and statuses.count(503) >= 1, statuses
    refused = next(r for r in results if r.status_code == 503)
    assert_openai_error(refused, 503, "server_overloaded")
    assert int(refused.headers["Retry-After"]) >= 1
    assert_alive(strict_http)
    again = strict_http.post("/v1/audio/speech", json={"input": "Back to normal.", "response_format": "wav"})
    assert again.status_code == 200
