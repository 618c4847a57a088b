"""Remote URL fetching refuses what would reach inside this network (SSRF), with a local test server for redirects."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from omniforge.errors import InvalidRequestError
from omniforge.governance.fetch import MAX_REDIRECTS, fetch_remote

ON = SimpleNamespace(allow_remote_urls=True)
BODY = b"\x89PNG fake image bytes"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        port = self.server.server_address[1]
        routes = {
            "/redirect-loopback": f"http://127.0.0.1:{port}/img",
            "/redirect-localhost": f"http://localhost:{port}/img",
            "/redirect-metadata": "http://169.254.169.254/latest/meta-data/",
            "/redirect-relative": "/img",
            "/loop": "/loop",
        }
        if self.path in routes:
            self.send_response(302)
            self.send_header("Location", routes[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/img":
            data = BODY
        elif self.path == "/host":
            data = self.headers.get("Host", "").encode()
        elif self.path == "/big":
            data = b"x" * 5000
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _refused(url: str, match: str = "", **kw: object) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError, match=match) as exc:
        fetch_remote(url, ON, 10_000, param="messages[0].content[1].image_url.url", **kw)
    assert exc.value.param == "messages[0].content[1].image_url.url"
    assert exc.value.message.startswith("messages[0].content[1].image_url.url: ")
    return exc.value


def test_off_unless_the_setting_allows_it():
    with pytest.raises(InvalidRequestError, match="remote URLs are off") as exc:
        fetch_remote("https://example.com/a.png", SimpleNamespace(), 100, param="image")
    assert exc.value.param == "image" and exc.value.code == "remote_urls_disabled"
    with pytest.raises(InvalidRequestError, match="remote URLs are off"):
        fetch_remote("https://example.com/a.png", SimpleNamespace(allow_remote_urls=False), 100)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/", "http://127.9.9.9:8080/x", "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:169.254.169.254]/", "http://10.1.2.3/",
    "http://192.168.0.1/", "http://172.16.5.4/", "http://100.64.0.1/", "http://0.0.0.0/", "http://[::]/",
    "http://[fe80::1]/", "http://[fc00::1]/", "http://224.0.0.1/", "http://[2002:7f00:1::]/",
    "http://localhost/", "http://localhost:8000/v1/models", "https://localhost/",
])
def test_non_public_addresses_are_refused(url):
    err = _refused(url, "only public addresses")
    assert err.code == "url_not_allowed"


@pytest.mark.parametrize("url, match", [
    ("file:///etc/passwd", "only http and https"),
    ("ftp://example.com/x", "only http and https"),
    ("gopher://127.0.0.1/", "only http and https"),
    ("example.com/x.png", "only http and https"),
    ("http:///nohost", "no host"),
    ("http://user:pw@example.com/", "credentials"),
])
def test_bad_urls_are_refused(url, match):
    _refused(url, match)


def test_a_redirect_to_loopback_is_refused_even_when_the_first_hop_was_allowed(origin):
    first = f"{origin}/redirect-loopback"
    only_first = lambda url, ip: url == first
    _refused(first, "127.0.0.1 resolves to 127.0.0.1", _allow=only_first)
    first = f"{origin}/redirect-localhost"
    only_first = lambda url, ip: url == first
    _refused(first, "localhost resolves to", _allow=only_first)
    first = f"{origin}/redirect-metadata"
    only_first = lambda url, ip: url == first
    _refused(first, "169.254.169.254", _allow=only_first)


def test_allowed_fetch_follows_redirects_and_limits_size(origin):
    loopback = lambda url, ip: ip.is_loopback
    assert fetch_remote(f"{origin}/img", ON, 1000, _allow=loopback) == BODY
    assert fetch_remote(f"{origin}/redirect-loopback", ON, 1000, _allow=loopback) == BODY
    assert fetch_remote(f"{origin}/redirect-relative", ON, 1000, _allow=loopback) == BODY
    port = origin.rsplit(":", 1)[1]
    assert fetch_remote(f"{origin}/host", ON, 1000, _allow=loopback) == f"127.0.0.1:{port}".encode()
    with pytest.raises(InvalidRequestError, match=f"more than {MAX_REDIRECTS} redirects"):
        fetch_remote(f"{origin}/loop", ON, 1000, _allow=loopback)
    with pytest.raises(InvalidRequestError, match="over the 1000 byte limit") as exc:
        fetch_remote(f"{origin}/big", ON, 1000, _allow=loopback, param="file")
    assert exc.value.param == "file"
    with pytest.raises(InvalidRequestError, match="HTTP 404"):
        fetch_remote(f"{origin}/missing", ON, 1000, _allow=loopback)


def test_the_connection_goes_to_the_checked_address_with_the_name_in_host(origin):
    """localhost is checked once, then the request goes to that address with Host: localhost:PORT."""
    port = origin.rsplit(":", 1)[1]
    v4 = socket.getaddrinfo("localhost", None, socket.AF_INET)
    if not v4 or socket.getaddrinfo("localhost", None)[0][0] != socket.AF_INET:
        pytest.skip("localhost does not resolve to 127.0.0.1 first here")
    loopback = lambda url, ip: ip.is_loopback
    assert fetch_remote(f"http://localhost:{port}/host", ON, 1000, _allow=loopback) == f"localhost:{port}".encode()
