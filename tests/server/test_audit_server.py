"""Every API request leaves one audit record (key id, endpoint, model, weights digest, cost, body hashes,
never the content) and the chain verifies: in-process over a fake model, and on a real server."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from fastapi.testclient import TestClient

import tests.fakes  # noqa: F401  # registers the fake-broken backend
from omniforge.catalog import ModelSpec
from omniforge.config import load_settings
from omniforge.governance.audit import AuditLog
from omniforge.router.ledger import key_id
from omniforge.server import create_app
from omniforge.service import Service

from .helpers import REQUEST_TIMEOUT_S, start_server


@pytest.fixture
def audited(tmp_path: Path) -> Iterator[tuple[TestClient, Path]]:
    service = Service(load_settings(api_keys=["sk-alice"]))
    weights = tmp_path / "echo"
    weights.mkdir()
    (weights / "weights.bin").write_bytes(b"echo weights")
    service.catalog.add(ModelSpec(id="echo", modality="text", backend="fake-broken", source=str(weights)))
    with TestClient(create_app(service), raise_server_exceptions=False,
                    headers={"Authorization": "Bearer sk-alice"}) as client:
        yield client, service.settings.home / "audit" / "audit.db"
    service.close()


def _chat(content: str, **extra: object) -> bytes:
    return json.dumps({"model": "echo", "messages": [{"role": "user", "content": content}], "temperature": 0.3,
                       "user": "someone", **extra}).encode()


def _post(client: TestClient, body: bytes, **headers: str):
    return client.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json", **headers})


def test_one_record_per_request_with_hashes_and_no_content(audited: tuple[TestClient, Path]) -> None:
    client, db = audited
    body = _chat("a secret sentence")
    r = _post(client, body, **{"x-omniforge-project": "alpha"})
    assert r.status_code == 200
    with client.stream("POST", "/v1/chat/completions", content=_chat("stream it", stream=True),
                       headers={"Content-Type": "application/json"}) as s:
        streamed = b"".join(s.iter_bytes())
    assert _post(client, _chat("fail-now")).status_code == 500
    assert _post(client, b'{"model": "nope", "messages": []}').status_code in (400, 404)

    log = AuditLog(db)
    records = list(log.records())
    assert len(records) == 4 and log.verify().ok
    first, stream, failed, unknown = (r.fields for r in records)
    assert first["key_id"] == key_id("sk-alice") and first["project"] == "alpha"
    assert first["endpoint"] == "/v1/chat/completions" and first["method"] == "POST" and first["status"] == 200
    assert first["model"] == "echo" and set(first["model_digest"]) == {"echo"}
    assert len(first["model_digest"]["echo"]) == 64
    assert first["input_hash"] == hashlib.sha256(body).hexdigest()
    assert first["output_hash"] == hashlib.sha256(r.content).hexdigest()
    assert first["params"] == {"model": "echo", "temperature": 0.3, "user": "someone"}
    assert first["cost"]["compute_seconds"] >= 0 and first["cost"]["output_tokens"] == 1
    assert first["error"] is None and first["request_id"].startswith("req_")
    assert stream["output_hash"] == hashlib.sha256(streamed).hexdigest() and stream["params"]["stream"] is True
    assert failed["status"] == 500 and "engine exploded" in failed["error"]
    assert unknown["status"] in (400, 404) and unknown["model"] == "nope" and unknown["model_digest"] == {}
    assert b"a secret sentence" not in db.read_bytes() + Path(f"{db}-wal").read_bytes()


def test_refused_requests_and_voice_sessions_are_audited(audited: tuple[TestClient, Path]) -> None:
    client, db = audited
    assert _post(client, _chat("hi"), Authorization="Bearer sk-wrong").status_code == 401
    assert client.get("/v1/models", headers={"Authorization": ""}).status_code == 401
    with client.websocket_connect("/v1/voice") as ws:  # the client's default header carries the key
        ws.send_text('{"type": "nonsense"}')
        assert ws.receive_json()["type"] == "error"
        ws.send_text('{"type": "config"}')
        assert ws.receive_json()["type"] == "ready"
    records = [r.fields for r in AuditLog(db).records()]
    wrong, missing, session = records
    assert wrong["status"] == 401 and wrong["key_id"] == key_id("sk-wrong") and "invalid_api_key" in wrong["error"]
    assert wrong["endpoint"] == "/v1/chat/completions" and wrong["model"] is None
    assert missing["status"] == 401 and missing["key_id"] is None and missing["endpoint"] == "/v1/models"
    assert session["endpoint"] == "/v1/voice" and session["method"] == "WEBSOCKET" and session["status"] == 101
    assert session["key_id"] == key_id("sk-alice") and session["params"]["messages_in"] == 2
    assert session["params"]["messages_out"] == 2 and session["error"] is None
    assert AuditLog(db).verify().ok


@pytest.mark.slow
def test_a_real_server_audits_every_request(tmp_path: Path) -> None:
    server = start_server(tmp_path, api_keys="sk-alice,sk-bob")
    try:
        alice = openai.OpenAI(base_url=server.base_url, api_key="sk-alice", max_retries=0, timeout=REQUEST_TIMEOUT_S)
        bob = openai.OpenAI(base_url=server.base_url, api_key="sk-bob", max_retries=0, timeout=REQUEST_TIMEOUT_S)
        alice.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hi"}],
                                      max_tokens=4)
        stream = alice.chat.completions.create(model="gpt-4o-mini", max_tokens=4, stream=True,
                                               messages=[{"role": "user", "content": "Count"}])
        assert list(stream)
        bob.embeddings.create(model="text-embedding-3-small", input="hello")
        with pytest.raises(openai.NotFoundError):
            bob.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    finally:
        server.stop()  # records are appended before a response ends; stopping also proves they are on disk

    log = AuditLog(server.home / "audit" / "audit.db")
    records = [r.fields for r in log.records()]
    report = log.verify()
    assert report.ok, report.problems
    assert [(r["key_id"], r["endpoint"], r["status"]) for r in records] == [
        (key_id("sk-alice"), "/v1/chat/completions", 200),
        (key_id("sk-alice"), "/v1/chat/completions", 200),
        (key_id("sk-bob"), "/v1/embeddings", 200),
        (key_id("sk-bob"), "/v1/chat/completions", 404),
    ]
    chat, streamed, embed, missing = records
    assert chat["model"] == "gemma-3-270m" and embed["model"] == "all-minilm-l6-v2"
    for rec in (chat, streamed, embed):
        digest = rec["model_digest"][rec["model"]]
        assert len(digest) == 64 and int(digest, 16) >= 0
        assert rec["cost"]["usd"] > 0 and rec["cost"]["compute_seconds"] > 0
        assert len(rec["input_hash"]) == 64 and len(rec["output_hash"]) == 64
        assert "messages" not in rec["params"] and "input" not in rec["params"]
    assert chat["model_digest"] == streamed["model_digest"]  # the same weights, hashed once
    assert chat["params"]["max_tokens"] == 4 and streamed["params"]["stream"] is True
    assert missing["model_digest"] == {} and "no-such-model" in missing["error"]
