"""GET /health and GET /metrics on the live server."""

from __future__ import annotations

import httpx
import openai


def test_health(http: httpx.Client) -> None:
    body = http.get("/health").json()
    assert body["status"] == "ok"
    assert isinstance(body["models_loaded"], list)


def test_metrics_count_requests_tokens_and_loaded_models(client: openai.OpenAI, http: httpx.Client) -> None:
    client.embeddings.create(model="all-minilm-l6-v2", input=["metrics please"])
    http.post("/v1/embeddings", content=b"{", headers={"Content-Type": "application/json"})
    r = http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'omniforge_requests_total{endpoint="/v1/embeddings",model="all-minilm-l6-v2",status="200"}' in text
    assert 'omniforge_requests_total{endpoint="/v1/embeddings",model="",status="400"}' in text
    assert 'omniforge_request_duration_seconds_bucket{endpoint="/v1/embeddings",le="+Inf"}' in text
    assert 'omniforge_tokens_total{direction="in",model="all-minilm-l6-v2"}' in text
    assert 'omniforge_model_loaded{modality="embedding",model="all-minilm-l6-v2"} 1.0' in text
    assert 'omniforge_model_memory_bytes{model="all-minilm-l6-v2"}' in text
    assert 'omniforge_queue_depth{model="all-minilm-l6-v2"} 0.0' in text
    loaded = {m["id"] for m in http.get("/health").json()["models_loaded"]}
    assert "all-minilm-l6-v2" in loaded

