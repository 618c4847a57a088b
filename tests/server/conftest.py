"""Real servers for the server tests: `python -m omniforge.server.run` in a subprocess, each with
its own OMNIFORGE_HOME (whose model cache links to the shared test cache, so joined weights are
made once per machine) and a free port, started once per session and stopped at its end.

`server` is the plain one every endpoint test uses. `strict_server` carries the settings that
make the refusals testable: API keys, a small upload limit and a queue of one.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from .helpers import REQUEST_TIMEOUT_S, STRICT_KEY, STRICT_UPLOAD_MB, ServerProcess, start_server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(tmp_path_factory.mktemp("server"))
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(
        tmp_path_factory.mktemp("strict-server"),
        api_keys=STRICT_KEY, max_upload_mb=str(STRICT_UPLOAD_MB), max_queue="1",
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def client(server: ServerProcess) -> openai.OpenAI:
    # No retries: a retried 503 or 500 would hide exactly what these tests look at.
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=REQUEST_TIMEOUT_S)


@pytest.fixture(scope="session")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT_S) as c:
        yield c


@pytest.fixture(scope="session")
def strict_http(strict_server: ServerProcess) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {STRICT_KEY}"}
    with httpx.Client(base_url=strict_server.url, headers=headers, timeout=REQUEST_TIMEOUT_S) as c:
        yield c
