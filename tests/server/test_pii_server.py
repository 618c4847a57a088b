"""PII protection over HTTP with the official openai client: personal data is redacted before the model
per key (keys create --pii redact) or per request (x-omniforge-pii), and out of what the audit log keeps."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from fastapi.testclient import TestClient

import tests.fakes  # noqa: F401  # registers the fake-echo backend
from omniforge.catalog import ModelSpec
from omniforge.config import load_settings
from omniforge.governance.audit import AuditLog
from omniforge.governance.keys import KeyStore
from omniforge.server import create_app
from omniforge.service import Service
from tests.fakes import EchoModel

PROMPT = "I am Jane Doe, write to jane.doe@example.com or call +44 20 7946 0958"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, Service, dict[str, str]]]:
    EchoModel.gate.set()
    service = Service(load_settings())
    store = KeyStore(service.settings.home / "keys.db")
    keys = {"plain": store.create("plain")[0], "private": store.create("private", pii="redact")[0]}
    store.close()
    weights = tmp_path / "echo"
    weights.mkdir()
    service.catalog.add(ModelSpec(id="echo", modality="text", backend="fake-echo", source=str(weights)))
    with TestClient(create_app(service), raise_server_exceptions=False) as http:
        yield http, service, keys
    service.close()


def _client(http: TestClient, key: str, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=http, max_retries=0,
                         default_headers=headers)


def _echo(client: openai.OpenAI, **extra: object) -> str:
    reply = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": PROMPT}], **extra)
    return reply.choices[0].message.content


@pytest.mark.slow  # builds the PII engine (presidio and spaCy imports)
def test_redaction_before_the_model_per_key_and_per_request(served) -> None:
    http, service, keys = served
    assert "jane.doe@example.com" in _echo(_client(http, keys["plain"]))  # the setting's default: off
    private = _echo(_client(http, keys["private"]))  # the model only ever saw placeholders
    assert "<PERSON>" in private and "<EMAIL_ADDRESS>" in private and "<PHONE_NUMBER>" in private
    assert "Jane" not in private and "example.com" not in private and "7946" not in private
    asked = _echo(_client(http, keys["plain"], **{"x-omniforge-pii": "redact"}))
    assert "<EMAIL_ADDRESS>" in asked
    assert "jane.doe@example.com" in _echo(_client(http, keys["private"], **{"x-omniforge-pii": "off"}))
    with pytest.raises(openai.BadRequestError) as bad:
        _echo(_client(http, keys["plain"], **{"x-omniforge-pii": "maybe"}))
    assert "x-omniforge-pii" in bad.value.message

    records = [r.fields for r in AuditLog(service.settings.home / "audit" / "audit.db").records()]
    assert records[1]["pii"] == {"PERSON": 1, "EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1}
    assert records[0]["pii"] == {}


@pytest.mark.slow
def test_the_audit_log_keeps_no_personal_data(served) -> None:
    http, service, keys = served
    client = _client(http, keys["plain"])
    _echo(client, user="jane.doe@example.com")
    with pytest.raises(openai.BadRequestError):
        client.audio.speech.create(model="tts-1", voice="Jane Doe", input="hello")  # the error quotes the voice
    db = service.settings.home / "audit" / "audit.db"
    chat, speech = [r.fields for r in AuditLog(db).records()]
    assert chat["params"]["user"] == "<EMAIL_ADDRESS>" and chat["pii"] == {"EMAIL_ADDRESS": 1}
    assert speech["status"] == 400 and "<PERSON>" in speech["error"] and speech["params"]["voice"] == "<PERSON>"
    assert speech["pii"] == {"PERSON": 2}  # in the voice parameter and in the error that quotes it
    stored = b"".join(p.read_bytes() for p in db.parent.glob("audit.db*"))
    assert b"jane.doe@example.com" not in stored and b"Jane Doe" not in stored


def test_keys_db_from_before_pii_modes_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE keys (id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, name TEXT NOT NULL, "
               "last4 TEXT NOT NULL, created REAL NOT NULL, revoked INTEGER NOT NULL DEFAULT 0, models TEXT NOT NULL, "
               "modalities TEXT NOT NULL, endpoints TEXT NOT NULL, rpm INTEGER NOT NULL DEFAULT 0, "
               "tpm INTEGER NOT NULL DEFAULT 0)")
    db.execute("INSERT INTO keys VALUES ('key_old', 'h', 'old', 'abcd', 0, 0, '[\"*\"]', '[\"*\"]', '[\"*\"]', 0, 0)")
    db.commit()
    db.close()
    store = KeyStore(path)
    try:
        assert [(r.name, r.pii) for r in store.list()] == [("old", "")]
        assert store.create("new", pii="redact")[1].pii == "redact"
        with pytest.raises(Exception, match="pii must be redact or off"):
            store.create("bad", pii="sometimes")
    finally:
        store.close()
