"""`omniforge risk assess`: the tier, every obligation with the omniforge controls that meet it in this
configuration, the models and their licenses, written as a Markdown and JSON risk register."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from omniforge.cli.main import app
from omniforge.config import load_settings
from omniforge.governance.register import build_register
from omniforge.service import Service

SUPPORT = {"name": "Support chatbot", "description": "A chatbot that answers customer questions from our manuals, "
           "with a voice reply.", "tasks": ["chat", "retrieval", "speech"], "data_sensitivity": "personal"}
HIRING = {"name": "CV screening", "description": "Rank job applicants by reading their CVs for recruiters.",
          "tasks": ["summarization"]}


def register(use_case: dict, **settings: object):
    service = Service(load_settings(**settings))
    try:
        return build_register(service, use_case)
    finally:
        service.close()


def rows(reg) -> dict[str, object]:
    return {r.article: r for r in reg.rows}


def test_a_chatbot_is_limited_and_its_marking_duty_follows_the_provenance_settings() -> None:
    on = register(SUPPORT)
    assert on.tier == "limited"
    marking = rows(on)["Art. 50(2)"]
    assert {c["id"]: c["on"] for c in marking.controls} == {"provenance": True, "text-watermark": False}
    assert marking.status == "partly met" and "text_watermark" in marking.left
    assert rows(on)["Art. 50(1)"].status == "deployer"  # telling people they talk to an AI is the UI's job
    off = register(SUPPORT, provenance=False)
    assert rows(off)["Art. 50(2)"].status == "available, off"
    assert [m["id"] for m in on.models] == ["gemma-3-270m", "all-minilm-l6-v2", "piper-en-us-joe"]
    assert on.models[0]["license"] == "Gemma Terms of Use" and on.models[0]["served"] is True
    assert on.gdpr  # personal data brings the GDPR notes


def test_hiring_is_high_risk_with_logging_met_and_retention_checked() -> None:
    reg = register(HIRING)
    assert reg.tier == "high" and any("Annex III point 4" in r for r in reg.reasons)
    by = rows(reg)
    assert by["Art. 12"].status == "met" and by["Art. 12"].controls[0]["id"] == "audit-log"
    for organisational in ("Art. 4", "Art. 17", "Art. 43", "Art. 49"):
        assert by[organisational].status == "deployer" and by[organisational].controls == []
    assert by["Art. 9"].status == "partly met"
    short = rows(register(HIRING, audit_retention_days=30))["Art. 26"]
    assert short.status == "partly met" and "audit_retention_days >= 183" in short.left
    policy_on = rows(register(HIRING, policy_categories=["weapons"]))["Art. 9"]
    assert {c["id"]: c["on"] for c in policy_on.controls}["content-policy"] is True


def test_listed_models_and_declined_terms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMNIFORGE_ACCEPT_LICENSES")
    reg = register({**HIRING, "models": ["gemma-3-270m", "whisper-base"]})
    assert [(m["id"], m["served"]) for m in reg.models] == [("gemma-3-270m", False), ("whisper-base", True)]


def test_cli_writes_markdown_and_json(tmp_path: Path) -> None:
    use_case = tmp_path / "usecase.yaml"
    use_case.write_text("name: Social scoring\ndescription: Score citizens by their social behaviour to decide "
                        "benefits.\ntasks: [classification]\n")
    result = CliRunner().invoke(app, ["risk", "assess", str(use_case), "--out", str(tmp_path / "reg")])
    assert result.exit_code == 0, result.output
    assert "tier unacceptable" in result.output
    md = (tmp_path / "reg" / "risk-register-social-scoring.md").read_text()
    data = json.loads((tmp_path / "reg" / "risk-register-social-scoring.json").read_text())
    assert md.startswith("# Risk register: Social scoring") and "| Art. 99(3) |" in md
    assert data["tier"] == "unacceptable" and data["rows"][0]["article"] == "Art. 4"
    assert {c["id"] for c in data["controls"]} >= {"provenance", "audit-log", "api-keys", "content-policy", "pii"}
    assert list((tmp_path / "reg").glob(".*tmp")) == []  # written whole, no temporary files left


def test_cli_bad_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    result = CliRunner().invoke(app, ["risk", "assess", str(bad), "--out", str(tmp_path / "reg")])
    assert result.exit_code == 1 and "is not valid YAML" in result.output
    assert not (tmp_path / "reg").exists()
    bad.write_text("name: x\nmodels: gemma\n")
    result = CliRunner().invoke(app, ["risk", "assess", str(bad)])
    assert result.exit_code == 1 and "models must be a list" in result.output
