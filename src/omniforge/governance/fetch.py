"""Fetching image and audio URLs a request names, without letting the request reach inside this network (SSRF).

Off unless the setting allow_remote_urls is true. Only http and https; every address the host
resolves to must be public (no private, loopback, link-local, multicast, reserved, shared or
unspecified address, IPv4 or IPv6, IPv4-mapped and 6to4 forms included); the connection goes to
the address that was checked (Host header and TLS SNI keep the name), so a DNS answer that
changes between check and connect (rebinding) cannot redirect it; redirects are followed by
hand, at most MAX_REDIRECTS, each hop checked again; the body is capped at `max_bytes`.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from ..errors import InvalidRequestError

MAX_REDIRECTS = 3
TIMEOUT_S = 10.0
_REDIRECTS = (301, 302, 303, 307, 308)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Test-only escape hatch: _allow(url, ip) -> True lets this hop connect to a non-public address
# (a test server on 127.0.0.1). Never set it in product code.
AllowHook = Callable[[str, IPAddress], bool]


def _embedded_v4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (::ffff:a.b.c.d, 6to4, NAT64), if any."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def is_public(ip: IPAddress) -> bool:
    """True only for a globally routable unicast address."""
    inner = _embedded_v4(ip)
    if inner is not None and not is_public(inner):
        return False
    if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved \
            or ip.is_unspecified or getattr(ip, "is_site_local", False):
        return False
    return ip.is_global


def _resolve(host: str, port: int, param: str) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise InvalidRequestError(f"{param}: cannot resolve host {host!r} ({exc})", param=param) from exc
    addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
    if not addresses:
        raise InvalidRequestError(f"{param}: host {host!r} has no address", param=param)
    return addresses


def _target(url: str, param: str, allow: AllowHook | None) -> tuple[str, str, IPAddress, int]:
    """Check one hop: (scheme, host, the checked address to connect to, port)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidRequestError(f"{param}: only http and https URLs can be fetched, not {scheme or 'no scheme'!r}",
                                  param=param)
    if parts.username or parts.password:
        raise InvalidRequestError(f"{param}: URLs with credentials are refused", param=param)
    host = parts.hostname
    if not host:
        raise InvalidRequestError(f"{param}: the URL has no host", param=param)
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        raise InvalidRequestError(f"{param}: invalid port in {url!r}", param=param) from exc
    addresses = _resolve(host, port, param)
    for ip in addresses:  # every address the name has: a mixed answer is refused as a whole
        if not is_public(ip) and not (allow is not None and allow(url, ip)):
            raise InvalidRequestError(
                f"{param}: {host} resolves to {ip}, a private, loopback, link-local or reserved address; "
                "only public addresses can be fetched", param=param, code="url_not_allowed")
    return scheme, host, addresses[0], port


def _pinned(url: str, ip: IPAddress, port: int) -> str:
    """`url` with its host replaced by the checked address."""
    parts = urlsplit(url)
    literal = f"[{ip}]" if isinstance(ip, ipaddress.IPv6Address) else str(ip)
    path = parts.path or "/"
    return urlunsplit((parts.scheme, f"{literal}:{port}", path, parts.query, ""))


def _read(response: httpx.Response, max_bytes: int, param: str) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise InvalidRequestError(f"{param}: the resource is {int(declared)} bytes, over the {max_bytes} byte limit",
                                  param=param, code="payload_too_large")
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise InvalidRequestError(f"{param}: the resource is over the {max_bytes} byte limit", param=param,
                                      code="payload_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def fetch_remote(url: str, settings: Any, max_bytes: int, *, param: str = "url", timeout_s: float = TIMEOUT_S,
                 _allow: AllowHook | None = None) -> bytes:
    """The body at `url`, fetched safely (see the module docstring); InvalidRequestError naming
    `param` for every refusal. `_allow` is for tests only."""
    if not getattr(settings, "allow_remote_urls", False):
        raise InvalidRequestError(
            f"{param}: remote URLs are off on this server; send the data inline (a data: URL or an upload), "
            "or set allow_remote_urls", param=param, code="remote_urls_disabled")
    with httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False) as client:
        for _hop in range(MAX_REDIRECTS + 1):
            scheme, host, ip, port = _target(url, param, _allow)
            default_port = 443 if scheme == "https" else 80
            headers = {"Host": host if port == default_port else f"{host}:{port}", "Accept": "*/*"}
            extensions = {"sni_hostname": host} if scheme == "https" else {}
            request = client.build_request("GET", _pinned(url, ip, port), headers=headers, extensions=extensions)
            try:
                response = client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise InvalidRequestError(f"{param}: could not fetch {url} ({type(exc).__name__}: {exc})",
                                          param=param) from exc
            try:
                if response.status_code in _REDIRECTS:
                    location = response.headers.get("location")
                    if not location:
                        raise InvalidRequestError(f"{param}: {url} redirects without a Location", param=param)
                    url = urljoin(url, location)
                    continue
                if response.status_code != 200:
                    raise InvalidRequestError(f"{param}: fetching {url} answered HTTP {response.status_code}",
                                              param=param)
                return _read(response, max_bytes, param)
            finally:
                response.close()
    raise InvalidRequestError(f"{param}: more than {MAX_REDIRECTS} redirects", param=param)


__all__ = ["MAX_REDIRECTS", "fetch_remote", "is_public"]
