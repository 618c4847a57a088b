"""Image URLs in chat on a server that allows remote URLs: SSRF attempts (loopback, the cloud metadata
address, IPv6 loopback, a redirect to loopback) are refused with a 400 naming the part, and nothing is fetched."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pytest

from .helpers import assert_openai_error, start_server


class _Target(BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self) -> None:  # noqa: N802  # http.server's name
        type(self).hits += 1
        self.send_response(302 if self.path == "/redirect" else 200)
        self.send_header("Location", "http://127.0.0.1:1/secret")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.slow
def test_ssrf_attempts_are_refused(tmp_path: Path) -> None:
    target = HTTPServer(("127.0.0.1", 0), _Target)
    threading.Thread(target=target.serve_forever, daemon=True).start()
    server = start_server(tmp_path, allow_remote_urls="true")
    try:
        port = target.server_address[1]
        for url in (f"http://127.0.0.1:{port}/cat.png", "http://169.254.169.254/latest/meta-data/",
                    f"http://[::1]:{port}/cat.png", f"http://localhost:{port}/redirect"):
            body = {"messages": [{"role": "user", "content": [
                {"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": url}}]}]}
            r = httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=30)
            error = assert_openai_error(r, 400, "invalid_request_error")
            assert error["param"] == "messages[0].content[1].image_url.url", (url, error)
        assert _Target.hits == 0  # refused before any connection
        assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
    finally:
        server.stop()
        target.shutdown()
