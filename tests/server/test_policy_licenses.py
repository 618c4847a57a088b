"""Over HTTP with the official openai client: a content policy block is a 400 content_policy_violation
whose verdict is in the audit record, and a model whose license terms are not accepted is a 403."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from fastapi.testclient import TestClient

import tests.fakes  # noqa: F401  # registers the fake-echo backend
from omniforge.catalog import ModelSpec
from omniforge.config import load_settings
from omniforge.governance.audit import AuditLog
from omniforge.server import create_app
from omniforge.service import Service
from tests.fakes import EchoModel


@pytest.fixture
def app_client(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[openai.OpenAI, Service]]:
    EchoModel.gate.set()
    service = Service(load_settings(**request.param))
    weights = tmp_path / "echo"
    weights.mkdir()
    service.catalog.add(ModelSpec(id="echo", modality="text", backend="fake-echo", source=str(weights)))
    with TestClient(create_app(service), raise_server_exceptions=False) as http:
        yield openai.OpenAI(base_url="http://testserver/v1", api_key="none", http_client=http, max_retries=0), service
    service.close()


@pytest.mark.parametrize("app_client", [{"policy_blocklist": ["project falcon"]}], indirect=True)
def test_a_blocked_prompt_is_a_400_on_the_audit_record(app_client: tuple[openai.OpenAI, Service]) -> None:
    client, service = app_client
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "Project Falcon plans?"}])
    assert refused.value.code == "content_policy_violation" and "rule blocklist" in refused.value.message
    with pytest.raises(openai.BadRequestError) as refused_stream:  # the first piece is checked before headers
        list(client.chat.completions.create(model="echo", stream=True,
                                            messages=[{"role": "user", "content": "project falcon"}]))
    assert refused_stream.value.code == "content_policy_violation"
    ok = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "a falcon flies"}])
    assert ok.choices[0].message.content  # the server stays up and serves the next request

    records = [r.fields for r in AuditLog(service.settings.home / "audit" / "audit.db").records()]
    blocked, _, fine = records
    assert blocked["status"] == 400 and blocked["policy"] == [
        {"rule": "blocklist", "action": "block", "stage": "input", "source": "prompt", "match": "project falcon"}]
    assert fine["status"] == 200 and fine["policy"] == []


@pytest.mark.parametrize("app_client", [{"accept_licenses": ""}], indirect=True)
def test_a_model_whose_terms_are_not_accepted_is_not_served(app_client: tuple[openai.OpenAI, Service]) -> None:
    client, service = app_client
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(model="gemma-3-270m", messages=[{"role": "user", "content": "Hi"}])
    assert refused.value.code == "license_not_accepted"
    assert "Gemma Terms of Use" in refused.value.message and "accept_licenses" in refused.value.message
    assert service.runtime.loaded() == []  # refused before anything loads
    assert client.embeddings.create(model="all-minilm-l6-v2", input="other models still serve").data
