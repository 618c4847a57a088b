"""Settings precedence: defaults < config file < OMNIFORGE_* environment < flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from omniforge.config import Settings, load_settings
from omniforge.errors import InvalidRequestError


def test_defaults_bind_loopback_and_use_home(tmp_path: Path) -> None:
    s = load_settings()
    assert s.host == "127.0.0.1"
    assert s.port == 8000
    assert s.catalog_path.parent == s.home
    assert s.threads >= 1


def test_precedence_file_env_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "omniforge.toml"
    cfg.write_text('port = 9001\nmax_queue = 3\nthreads = 2\npreload = ["gemma-3-270m"]\n')
    s = load_settings(cfg)
    assert (s.port, s.max_queue, s.threads, s.preload) == (9001, 3, 2, ["gemma-3-270m"])

    monkeypatch.setenv("OMNIFORGE_PORT", "9002")
    monkeypatch.setenv("OMNIFORGE_API_KEYS", "k1, k2")
    s = load_settings(cfg)
    assert s.port == 9002 and s.max_queue == 3 and s.api_keys == ["k1", "k2"]

    s = load_settings(cfg, port=9003, max_queue=None)  # None flags do not override
    assert s.port == 9003 and s.max_queue == 3


def test_config_file_from_env_and_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[omniforge]\nmemory_budget_mb = 100\n")
    monkeypatch.setenv("OMNIFORGE_CONFIG_FILE", str(cfg))
    assert load_settings().memory_budget_mb == 100


@pytest.mark.parametrize(
    ("content", "needle"),
    [("port = [", "not valid TOML"), ("colour = 1", "unknown setting"), ('port = "abc"', "not a valid int")],
)
def test_bad_config_file_is_one_clear_error(tmp_path: Path, content: str, needle: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(content)
    with pytest.raises(InvalidRequestError, match=needle):
        load_settings(cfg)


def test_bad_env_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNIFORGE_MAX_QUEUE", "many")
    with pytest.raises(InvalidRequestError, match="OMNIFORGE_MAX_QUEUE"):
        load_settings()


def test_two_homes_do_not_share_state(tmp_path: Path) -> None:
    a = load_settings(home=tmp_path / "a")
    b = load_settings(home=tmp_path / "b")
    assert isinstance(a, Settings)
    assert {a.catalog_path, a.cache_dir}.isdisjoint({b.catalog_path, b.cache_dir})
