"""The usage ledger: budgets parsed and enforced under concurrency, no charge lost or doubled across a restart,
and the Service metering its own leases (compute seconds, tokens, cost) into it."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from omniforge.config import load_settings
from omniforge.errors import BudgetExceededError, InvalidRequestError
from omniforge.router.cost import CostModel
from omniforge.router.ledger import Amounts, Ledger, key_id, parse_budgets
from omniforge.router.report import chart_png, table
from omniforge.service import Service
from omniforge.types import GenerationParams


def test_budgets_are_parsed_and_keys_never_stored() -> None:
    budgets = parse_budgets(["key:sk-a=10 requests/day", "project:web=0.5 usd/month", "*=60 compute_seconds/day"])
    assert [str(b) for b in budgets] == [f"key:{key_id('sk-a')} 10 requests/day", "project:web 0.5 usd/month",
                                         "* 60 compute_seconds/day"]
    assert key_id("sk-a").startswith("key_") and "sk-a" not in key_id("sk-a") and key_id(key_id("sk-a")) == key_id("sk-a")
    for bad in ("key:a=10 requests/week", "web=1 usd/day", "*=ten requests/day", "*=1 dollars/day"):
        with pytest.raises(InvalidRequestError, match="budget"):
            parse_budgets([bad])


def test_cost_model_prices_compute_and_tokens() -> None:
    model = CostModel(usd_per_hour=0.36, watts=100, usd_per_kwh=0.5)
    cost = model.of_seconds(36)  # 1% of an hour
    assert cost.usd == pytest.approx(0.0036 + 0.001 * 0.5) and cost.energy_wh == pytest.approx(1.0)
    assert "usd=0.00410000" in cost.header()


def test_concurrent_requests_cannot_slip_past_a_budget(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db", parse_budgets(["key:sk-a=5 requests/day"]))
    admitted, refused = [], []

    def ask(i: int) -> None:
        try:
            ledger.reserve(f"req-{i}", Amounts(), key=key_id("sk-a"))  # a connection per thread
            admitted.append(i)
        except BudgetExceededError as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(admitted) == 5 and len(refused) == 11
    assert "5 requests/day would be exceeded: 5 requests used this day" in refused[0]
    other = key_id("sk-b")  # another key has no budget
    ledger.reserve("req-b", Amounts(), key=other)


def test_settling_twice_charges_once_and_a_restart_keeps_reservations(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    budgets = parse_budgets(["project:web=1.0 usd/day"])
    ledger = Ledger(path, budgets)
    ledger.reserve("r1", Amounts(usd=0.4), project="web")
    assert ledger.settle("r1", Amounts(10, 5, 2.0, 0.3, 1.0)) is True
    assert ledger.settle("r1", Amounts(10, 5, 2.0, 0.3, 1.0)) is False  # a second settle is a no-op
    ledger.reserve("r2", Amounts(usd=0.5), project="web")  # in flight when the process dies
    assert Ledger(path, budgets).interrupted == 0  # a second reader while this process lives takes nothing
    ledger.close()
    with sqlite3.connect(path) as db:  # as if a process that no longer exists had reserved it
        db.execute("UPDATE charges SET owner = 999999999 WHERE id = 'r2'")
    reopened = Ledger(path, budgets)
    assert reopened.interrupted == 1 and reopened.charge("r2")["status"] == "interrupted"
    (row,) = reopened.usage(["project"])
    assert row["requests"] == 2 and row["usd"] == pytest.approx(0.8)  # settled 0.3 + the interrupted 0.5
    with pytest.raises(BudgetExceededError, match=r"spent|used"):
        reopened.reserve("r3", Amounts(usd=0.25), project="web")  # 0.8 + 0.25 > 1.0
    reopened.reserve("r4", Amounts(usd=0.15), project="web")


def test_usage_reports(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    for i, (model, usd) in enumerate((("gemma", 0.002), ("gemma", 0.001), ("piper", 0.0005))):
        ledger.reserve(f"r{i}", Amounts(), model=model, modality="text" if model == "gemma" else "speech")
        ledger.settle(f"r{i}", Amounts(3, 4, 1.5, usd, 0.2))
    rows = ledger.usage(["model"])
    assert [(r["model"], r["requests"]) for r in rows] == [("gemma", 2), ("piper", 1)]
    assert rows[0]["usd"] == pytest.approx(0.003) and rows[0]["input_tokens"] == 6
    text = table(rows, ["model"])
    assert "gemma" in text and "total" in text and "█" in text
    assert chart_png(rows, ["model"])[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InvalidRequestError, match="cannot group usage by colour"):
        ledger.usage(["colour"])


def test_the_service_meters_what_it_runs(tmp_path: Path) -> None:
    service = Service(load_settings(home=tmp_path / "home", threads=1))
    try:
        result = service.complete("The capital of France is", params=GenerationParams(max_tokens=8))[0]
        service.embed(["one", "two"])
        rows = {r["model"]: r for r in service.meter.ledger.usage(["model"])}
    finally:
        service.close()
    assert set(rows) == {"gemma-3-270m", "all-minilm-l6-v2"}
    text = rows["gemma-3-270m"]
    assert text["requests"] == 1 and text["compute_seconds"] > 0 and text["usd"] > 0
    assert text["input_tokens"] == result.usage.prompt_tokens and text["output_tokens"] == result.usage.completion_tokens


def test_a_budget_stops_the_service_before_the_model_runs(tmp_path: Path) -> None:
    service = Service(load_settings(home=tmp_path / "home", threads=1, budgets="*=20 tokens/day"))
    try:
        usage, token = service.meter.begin("sk-a", None, "test")
        try:
            with pytest.raises(BudgetExceededError, match="20 tokens/day"):
                service.complete("Hello there", params=None)  # ~3 prompt + 512 max tokens > 20
        finally:
            service.meter.end(usage, token)
        assert service.meter.ledger.usage(["key"]) == []  # refused: nothing reserved, nothing charged
        assert not service.runtime.loaded()  # the model was never even loaded
    finally:
        service.close()
