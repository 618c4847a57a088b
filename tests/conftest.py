"""Suite-wide fixtures: every test runs with its own OMNIFORGE_HOME, and heavy model files are
cached once per machine in a shared folder so the embedded weights are joined only once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Joined embedded weights (gemma-3-270m, whisper-base) live here across test sessions.
SHARED_CACHE = Path(os.environ.get("OMNIFORGE_TEST_CACHE", "/tmp/omniforge-test-cache"))


ACCEPTED = "gemma"  # the suite accepts the Gemma terms, as `make run` does (tests of the refusal unset it)
# For the whole process, so module-scoped fixtures (made before any test's own fixtures) accept them too.
os.environ["OMNIFORGE_ACCEPT_LICENSES"] = ACCEPTED


def make_home(root: Path) -> Path:
    """A fresh OMNIFORGE_HOME whose model cache points at the shared cache."""
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    SHARED_CACHE.mkdir(parents=True, exist_ok=True)
    cache = home / "cache"
    if not cache.exists():
        cache.symlink_to(SHARED_CACHE, target_is_directory=True)
    return home


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads or writes the user's ~/.omniforge or their OMNIFORGE_* settings."""
    for key in list(os.environ):
        if key.startswith("OMNIFORGE_") and key not in ("OMNIFORGE_TEST_CACHE", "OMNIFORGE_ACCEPT_LICENSES"):
            monkeypatch.delenv(key)
    home = make_home(tmp_path)
    monkeypatch.setenv("OMNIFORGE_HOME", str(home))
    return home
