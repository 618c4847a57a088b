"""Cost, budgets and routing over HTTP with the official openai client: every response says what it cost,
a budget stops the request that would exceed it (also under concurrency and after a restart, with no
charge lost or doubled), /v1/usage reports it, and model "auto" explains its choice."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from .helpers import REQUEST_TIMEOUT_S, start_server

KEYS = "sk-alice,sk-bob,sk-carol"
BUDGETS = "key:sk-alice=3 requests/day,key:sk-carol=2 requests/day"


def _client(server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=REQUEST_TIMEOUT_S)


def _usage(server, key: str, group_by: str = "key") -> dict:
    r = httpx.get(f"{server.base_url}/usage", params={"group_by": group_by}, timeout=30,
                  headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.slow
def test_costs_budgets_and_a_restart(tmp_path: Path) -> None:
    server = start_server(tmp_path, api_keys=KEYS, budgets=BUDGETS)
    try:
        alice = _client(server, "sk-alice")
        for _ in range(3):
            raw = alice.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hi"}], max_tokens=4)
            reply = raw.parse()
            assert raw.headers["x-omniforge-cost"].startswith("usd=")
            assert reply.usage.model_extra["cost"] > 0 and reply.usage.model_extra["compute_seconds"] > 0
        with pytest.raises(openai.RateLimitError) as refused:
            alice.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}],
                                          max_tokens=4)
        assert refused.value.code == "budget_exceeded" and "3 requests/day" in refused.value.message
        bob = _client(server, "sk-bob")  # no budget of his own
        assert bob.embeddings.create(model="text-embedding-3-small", input="hello").usage.model_extra["cost"] > 0

        carol = _client(server, "sk-carol")  # six at once against a budget of two

        def embed(i: int) -> str:
            try:
                carol.embeddings.create(model="text-embedding-3-small", input=f"text {i}")
                return "ok"
            except openai.RateLimitError as exc:
                return exc.code

        with ThreadPoolExecutor(6) as pool:
            outcomes = list(pool.map(embed, range(6)))
        assert sorted(outcomes) == ["budget_exceeded"] * 4 + ["ok"] * 2

        mine = _usage(server, "sk-alice")
        assert [row["requests"] for row in mine["data"]] == [3]  # a key sees only its own usage
        assert mine["totals"]["usd"] > 0 and mine["prices"]["usd_per_hour"] > 0
    finally:
        server.stop()

    again = start_server(tmp_path, api_keys=KEYS, budgets=BUDGETS)  # same home: the ledger survives
    try:
        with pytest.raises(openai.RateLimitError):
            _client(again, "sk-alice").chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
        assert [row["requests"] for row in _usage(again, "sk-alice")["data"]] == [3]  # none lost, none doubled
        assert [row["requests"] for row in _usage(again, "sk-carol")["data"]] == [2]
        chart = httpx.get(f"{again.base_url}/usage", params={"group_by": "model", "format": "png"},
                          headers={"Authorization": "Bearer sk-bob"}, timeout=30)
        assert chart.status_code == 200 and chart.content[:4] == b"\x89PNG"
    finally:
        again.stop()


@pytest.mark.slow
def test_model_auto_routes_and_explains(tmp_path: Path) -> None:
    server = start_server(tmp_path, default_embedding_model="auto")
    try:
        client = _client(server, "unused")
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "Say hi"}], max_tokens=4)
        assert raw.headers["x-omniforge-model"] == "gemma-3-270m"
        assert raw.headers["x-omniforge-route"].startswith("chose gemma-3-270m")
        assert raw.parse().choices[0].message.content is not None
        with pytest.raises(openai.BadRequestError) as no_fit:  # nothing embedded reads Japanese
            client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}],
                                           max_tokens=4, metadata={"language": "ja"})
        assert no_fit.value.code == "no_model_fits" and "gemma-3-270m" in no_fit.value.message
        emb = client.embeddings.with_raw_response.create(model="auto", input="hello")
        assert emb.headers["x-omniforge-model"] == "all-minilm-l6-v2"
        by_default = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="hello")
        assert by_default.headers["x-omniforge-model"] == "all-minilm-l6-v2"  # the default is "auto" here
    finally:
        server.stop()
