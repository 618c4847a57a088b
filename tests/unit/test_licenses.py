"""Model licenses are recorded in the catalog and shown; a model whose terms need acceptance is not
loaded, routed or served until the configuration accepts them."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from omniforge.cli.main import app
from omniforge.config import load_settings
from omniforge.errors import InvalidRequestError, LicenseNotAcceptedError
from omniforge.service import Service
from omniforge.types import GenerationParams, Message


@pytest.fixture
def declined(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMNIFORGE_ACCEPT_LICENSES")


def test_every_embedded_model_records_its_license() -> None:
    service = Service(load_settings())
    try:
        for spec in service.models():
            assert spec.license and spec.license != "unknown", spec.id
        gemma = service.model("gemma-3-270m")
        assert gemma.terms == "gemma" and "ai.google.dev/gemma/terms" in gemma.card
        assert "GPL-3.0" in service.model("piper-en-us-joe").license
    finally:
        service.close()


def test_unaccepted_terms_refuse_lease_preload_and_route(declined: None) -> None:
    service = Service(load_settings())
    try:
        with pytest.raises(LicenseNotAcceptedError) as refused:
            service.chat([Message("user", "Hi")], "gemma-3-270m", GenerationParams(max_tokens=2))
        assert refused.value.status_code == 403 and refused.value.code == "license_not_accepted"
        assert "OMNIFORGE_ACCEPT_LICENSES=gemma" in str(refused.value)
        with pytest.raises(LicenseNotAcceptedError):
            service.preload(["gemma-3-270m"])
        assert service.runtime.loaded() == []
        with pytest.raises(InvalidRequestError, match="license terms 'gemma' not accepted"):
            service.pick("auto", "text", "chat")
    finally:
        service.close()


def test_accepting_in_the_config_serves_it(tmp_path, declined: None) -> None:
    config = tmp_path / "omniforge.toml"
    config.write_text('accept_licenses = ["gemma"]\n')
    service = Service(load_settings(config))
    try:
        assert service.pick("auto", "text", "chat").id == "gemma-3-270m"
        assert service.chat([Message("user", "Hi")], "gemma-3-270m", GenerationParams(max_tokens=2))[0].text
    finally:
        service.close()


def test_cli_shows_licenses_cards_and_what_to_accept(declined: None) -> None:
    result = CliRunner().invoke(app, ["models", "licenses"])
    assert result.exit_code == 0, result.output
    assert "Gemma Terms of Use" in result.output and "no: accept 'gemma'" in result.output
    assert "OMNIFORGE_ACCEPT_LICENSES=gemma" in result.output
    rows = {r["id"]: r for r in json.loads(CliRunner().invoke(app, ["models", "licenses", "--json"]).output)}
    assert rows["gemma-3-270m"]["served"] is False and rows["whisper-tiny.en"]["served"] is True
    refused = CliRunner().invoke(app, ["generate", "Hello", "--max-tokens", "2"])
    assert refused.exit_code == 1 and "accept_licenses" in refused.output
