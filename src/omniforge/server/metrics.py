"""Prometheus metrics for one app, in its own registry (two apps in one process never mix).

Counted per request by `MetricsMiddleware`: requests by endpoint, model and status, and latency
(until the last byte, so a stream counts whole). Counted by the routes: tokens in and out, audio
seconds. Read from the runtime at scrape time: queue depth, loaded models, their memory and
active requests.

The endpoint label is the route's path template and the model label the model that served the
request (the `x-omniforge-model` header), so label values stay bounded whatever clients send.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from ..service import Service

MODEL_HEADER = "x-omniforge-model"
_MODEL_HEADER_BYTES = MODEL_HEADER.encode()
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class _RuntimeCollector(Collector):
    """Gauges read from the model runtime when /metrics is scraped."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def collect(self) -> Iterator[GaugeMetricFamily]:
        runtime = self.service.runtime
        queue = GaugeMetricFamily("omniforge_queue_depth", "Requests waiting for a model slot", labels=["model"])
        for model_id, depth in sorted(runtime.queue_depths().items()):
            queue.add_metric([model_id], depth)
        loaded = GaugeMetricFamily("omniforge_model_loaded", "1 for each loaded model", labels=["model", "modality"])
        memory = GaugeMetricFamily("omniforge_model_memory_bytes", "Memory held by a loaded model", labels=["model"])
        active = GaugeMetricFamily("omniforge_model_active_requests", "Requests running in a model", labels=["model"])
        load_s = GaugeMetricFamily("omniforge_model_load_seconds", "How long a model took to load", labels=["model"])
        for m in runtime.loaded():
            loaded.add_metric([m.id, m.modality], 1)
            memory.add_metric([m.id], m.memory_bytes)
            active.add_metric([m.id], m.active)
            load_s.add_metric([m.id], m.load_seconds)
        yield from (queue, loaded, memory, active, load_s)


class Metrics:
    def __init__(self, service: Service) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "omniforge_requests", "HTTP requests served", ["endpoint", "model", "status"], registry=r
        )
        self.latency = Histogram(
            "omniforge_request_duration_seconds", "Time from request to last response byte", ["endpoint"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.tokens = Counter("omniforge_tokens", "Text tokens processed", ["model", "direction"], registry=r)
        self.audio_seconds = Counter(
            "omniforge_audio_seconds", "Seconds of audio transcribed", ["model"], registry=r
        )
        r.register(_RuntimeCollector(service))

    def count_tokens(self, model: str, prompt: int, completion: int = 0) -> None:
        if prompt:
            self.tokens.labels(model, "in").inc(prompt)
        if completion:
            self.tokens.labels(model, "out").inc(completion)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Pure ASGI middleware (it must not buffer streams): status, model and latency per request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        seen: dict[str, object] = {"status": 500, "model": ""}

        async def send_and_record(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                for key, value in message.get("headers", ()):
                    if key.lower() == _MODEL_HEADER_BYTES:
                        seen["model"] = value.decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            if not seen["model"]:  # an unexpected error's response is sent outside this middleware
                seen["model"] = (scope.get("state") or {}).get("model_id") or ""
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            if endpoint != "/metrics":
                self.metrics.requests.labels(endpoint, seen["model"], str(seen["status"])).inc()
                self.metrics.latency.labels(endpoint).observe(time.perf_counter() - t0)
