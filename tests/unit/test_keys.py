"""API keys: the store (hashes only), scopes, the rate limiter under threads, the CLI, and the
refusal to serve beyond loopback without a key."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from omniforge.config import load_settings
from omniforge.errors import (
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
)
from omniforge.governance.keys import KeyStore, RateLimiter, admin_record, check_lease
from omniforge.router.ledger import key_id
from omniforge.server.run import check_exposure, is_loopback


@pytest.fixture
def store(tmp_path: Path):
    s = KeyStore(tmp_path / "keys.db")
    yield s
    s.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_create_gives_a_secret_once_and_stores_only_its_hash(store, tmp_path):
    secret, rec = store.create("alice", models=["gemma-3-270m"], modalities="text", endpoints=["/v1/chat"], rpm=5)
    assert re.fullmatch(r"of-[A-Za-z0-9_-]{32}", secret)
    assert rec.id == key_id(secret)  # usage rows and budgets use the same id
    assert rec.last4 == secret[-4:] and rec.display.endswith(secret[-4:])
    assert (rec.models, rec.modalities, rec.endpoints, rec.rpm, rec.tpm) == (
        ("gemma-3-270m",), ("text",), ("/v1/chat",), 5, 0)
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("keys.db*"))
    assert secret.encode() not in raw and secret[3:].encode() not in raw
    assert (tmp_path / "keys.db-wal").exists()  # WAL mode
    assert store.lookup(secret) == rec
    assert store.lookup(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert store.lookup("not-a-key") is None
    assert store.list() == [rec]


def test_a_second_store_on_the_file_sees_keys_and_revocations(store, tmp_path):
    secret, rec = store.create("bob")
    other = KeyStore(tmp_path / "keys.db")
    try:
        assert other.lookup(secret) == rec
        assert other.revoke("bob").revoked
        assert store.lookup(secret) is None  # the server's store sees the CLI's revocation at once
        assert store.has_keys() is False and store.has_keys(active_only=False) is True
        assert [r.revoked for r in store.list()] == [True]
    finally:
        other.close()


def test_revoke_by_id_and_errors(store):
    s1, r1 = store.create("ci")
    with pytest.raises(InvalidRequestError, match="already named 'ci'"):
        store.create("ci")
    store.revoke(r1.id)
    assert store.lookup(s1) is None
    s2, r2 = store.create("ci")  # the name is free again once revoked
    assert store.lookup(s2) == r2
    with pytest.raises(NotFoundError, match="nope"):
        store.revoke("nope")
    with pytest.raises(InvalidRequestError, match="modalities: unknown sound"):
        store.create("x", modalities="text,sound")
    with pytest.raises(InvalidRequestError, match="path prefixes"):
        store.create("x", endpoints="v1/chat")
    with pytest.raises(InvalidRequestError, match="rpm"):
        store.create("x", rpm=-1)
    with pytest.raises(InvalidRequestError, match="name"):
        store.create("  ")


def test_scopes(store):
    _, rec = store.create("s", models="whisper-*,gemma-3-270m", modalities=["text", "transcription"],
                          endpoints="/v1/chat,/v1/audio/")
    assert rec.allows_endpoint("/v1/chat/completions") and rec.allows_endpoint("/v1/chat")
    assert rec.allows_endpoint("/v1/audio/transcriptions")
    assert not rec.allows_endpoint("/v1/chatty") and not rec.allows_endpoint("/v1/embeddings")
    assert not rec.allows_endpoint("/docs") and not rec.allows_endpoint("/metrics")
    assert rec.allows("gemma-3-270m", "text") and rec.allows("whisper-tiny.en", "transcription")
    assert not rec.allows("gemma-3-270m", "image") and not rec.allows("qwen", "text")
    _, star = store.create("all", models="*", modalities="*,text", endpoints="*")
    assert star.models == star.modalities == star.endpoints == ("*",)
    assert star.allows("anything", "video") and star.allows_endpoint("/whatever")
    admin = admin_record("sk-settings-key")
    assert admin.id == key_id("sk-settings-key") and admin.source == "settings"
    assert admin.allows("x", "video") and admin.allows_endpoint("/openapi.json") and admin.rpm == admin.tpm == 0


def test_check_lease(store):
    _, rec = store.create("t", models="gemma-3-270m", modalities="text", tpm=100)
    limiter = RateLimiter(clock=Clock())
    check_lease(None, "anything", "video", 10**6, limiter)  # no key: nothing to check
    check_lease(rec, "gemma-3-270m", "text", 60, limiter)
    with pytest.raises(RateLimitError) as exc:
        check_lease(rec, "gemma-3-270m", "text", 60, limiter)
    assert exc.value.status_code == 429 and 0 < exc.value.retry_after <= 60
    with pytest.raises(PermissionDeniedError) as denied:
        check_lease(rec, "house-image", "image", 1, limiter)
    err = denied.value
    assert (err.status_code, err.error_type, err.code, err.param) == (403, "permission_error", "scope_denied", "model")
    check_lease(admin_record("k"), "house-image", "image", 10**6, limiter)


def test_limiter_lets_exactly_n_of_m_through_under_threads():
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    passed, refused, retry = [], [], []
    barrier = threading.Barrier(16)

    def worker() -> None:
        barrier.wait()
        for _ in range(25):
            try:
                limiter.take_request("key_a", 50)
                passed.append(1)
            except RateLimitError as exc:
                refused.append(1)
                retry.append(exc.retry_after)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (len(passed), len(refused)) == (50, 16 * 25 - 50)
    assert all(0 < r <= 60 for r in retry)
    limiter.take_request("key_b", 50)  # keys are counted apart
    clock.now += 59.9
    with pytest.raises(RateLimitError):
        limiter.take_request("key_a", 50)
    clock.now += 0.2  # the window slid past the first 50
    limiter.take_request("key_a", 50)
    limiter.take_request("key_a", 0)  # 0 = unlimited


def test_limiter_tokens_retry_after_is_when_enough_leave_the_window():
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    limiter.take_tokens("k", 40, 100)
    clock.now += 10
    limiter.take_tokens("k", 40, 100)
    clock.now += 10
    with pytest.raises(RateLimitError) as exc:
        limiter.take_tokens("k", 40, 100)  # needs the first 40 to leave: at t0 + 60, i.e. in 40 s
    assert exc.value.retry_after == pytest.approx(40)
    with pytest.raises(RateLimitError, match="more than the key's limit"):
        limiter.take_tokens("k", 101, 100)
    clock.now += 40
    limiter.take_tokens("k", 40, 100)


def test_is_loopback_and_refusing_to_serve_remote_without_keys(tmp_path):
    for host in ("127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "", "192.168.1.5", "example.com", "localhost.example.com"):
        assert not is_loopback(host), host
    home = tmp_path / "h"
    check_exposure(load_settings(home=home, host="127.0.0.1"))
    with pytest.raises(InvalidRequestError, match="refusing to serve on 0.0.0.0 without an API key") as exc:
        check_exposure(load_settings(home=home, host="0.0.0.0"))
    assert "omniforge keys create" in exc.value.message and "api_keys" in exc.value.message
    check_exposure(load_settings(home=home, host="0.0.0.0", api_keys=["sk-x"]))
    store = KeyStore(home / "keys.db")
    _, rec = store.create("remote")
    check_exposure(load_settings(home=home, host="0.0.0.0"))
    store.revoke(rec.id)
    store.close()
    with pytest.raises(InvalidRequestError):
        check_exposure(load_settings(home=home, host="0.0.0.0"))


def test_cli_create_list_revoke(tmp_path):
    from omniforge.cli import keys
    from omniforge.cli.main import OmniforgeGroup
    from omniforge.cli.state import CliState

    home = tmp_path / "clihome"
    root = typer.Typer(cls=OmniforgeGroup)

    @root.callback()
    def _global(ctx: typer.Context) -> None:
        ctx.obj = CliState(home=home)

    root.add_typer(keys.app, name="keys")  # as cli/main.py registers it
    runner = CliRunner()
    out = runner.invoke(root, ["keys", "create", "web", "--models", "gemma-3-270m", "--modalities", "text",
                               "--endpoints", "/v1/chat", "--rpm", "10", "--tpm", "1000"])
    assert out.exit_code == 0, out.output
    secret = out.stdout.strip().splitlines()[0]
    assert secret.startswith("of-") and len(secret) == 35
    listed = runner.invoke(root, ["keys", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    (rec,) = json.loads(listed.stdout)
    assert rec["name"] == "web" and rec["rpm"] == 10 and rec["tpm"] == 1000 and rec["endpoints"] == ["/v1/chat"]
    assert secret not in runner.invoke(root, ["keys", "list"]).stdout
    bad = runner.invoke(root, ["keys", "create", "x", "--modalities", "smell"])
    assert bad.exit_code == 1 and "modalities: unknown smell" in bad.output
    revoked = runner.invoke(root, ["keys", "revoke", "web"])
    assert revoked.exit_code == 0 and rec["id"] in revoked.stdout
    s = KeyStore(home / "keys.db")
    assert s.lookup(secret) is None
    s.close()
    missing = runner.invoke(root, ["keys", "revoke", "web"])
    assert missing.exit_code == 1 and "no key" in missing.output
