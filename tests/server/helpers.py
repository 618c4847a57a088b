"""Helpers for the server tests: starting a real server in a subprocess, checking OpenAI's error
shape, decoding audio independently of omniforge (the ffmpeg binary of imageio-ffmpeg), and the
word error rate."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import jiwer
import numpy as np

from tests.conftest import ACCEPTED

REPO = Path(__file__).resolve().parents[2]
SHARED_CACHE = Path(os.environ.get("OMNIFORGE_TEST_CACHE", "/tmp/omniforge-test-cache"))
STARTUP_TIMEOUT_S = 90.0
REQUEST_TIMEOUT_S = 300.0  # a first request may load a model on two busy cores
STRICT_KEY = "sk-omniforge-test"
STRICT_UPLOAD_MB = 0.25


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    url: str
    home: Path
    log: Path
    proc: subprocess.Popen[bytes]

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def start_server(root: Path, **settings: str) -> ServerProcess:
    """Start a server with OMNIFORGE_<NAME>=value for each setting; wait until /health answers."""
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    SHARED_CACHE.mkdir(parents=True, exist_ok=True)
    if not (home / "cache").exists():
        (home / "cache").symlink_to(SHARED_CACHE, target_is_directory=True)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIFORGE_")}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")])),
        OMNIFORGE_HOME=str(home),
        OMNIFORGE_HOST="127.0.0.1",
        OMNIFORGE_PORT=str(port),
        OMNIFORGE_LOG_LEVEL="info",
        OMNIFORGE_ACCEPT_LICENSES=ACCEPTED,
    )
    env.update({f"OMNIFORGE_{k.upper()}": v for k, v in settings.items()})
    log = root / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "omniforge.server.run"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    server = ServerProcess(f"http://127.0.0.1:{port}", home, log, proc)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"server did not answer /health within {STARTUP_TIMEOUT_S:.0f} s:\n{server.log_tail()}")


def assert_alive(http: httpx.Client) -> None:
    """The server still serves a request after whatever the test did to it."""
    r = http.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def assert_openai_error(response: httpx.Response, status: int, error_type: str, code: str | None = None) -> dict:
    """`response` is OpenAI's error shape with this status, type and (if given) code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert err["type"] == error_type, err
    assert isinstance(err["message"], str) and err["message"], err
    if code is not None:
        assert err["code"] == code, err
    return err


def decode_audio(data: bytes, fmt: str) -> np.ndarray:
    """Mono float32 samples at 16 kHz from an encoded speech response, decoded by ffmpeg itself."""
    import imageio_ffmpeg

    if fmt == "pcm":  # raw s16le mono at 24 kHz, as OpenAI serves it: no header to probe
        input_args = ["-f", "s16le", "-ar", "24000", "-ac", "1"]
    else:
        input_args = []
    proc = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", *input_args, "-i", "pipe:0",
         "-f", "f32le", "-ac", "1", "-ar", "16000", "pipe:1"],
        input=data, capture_output=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return np.frombuffer(proc.stdout, dtype="<f4")


def _normalize(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def word_error_rate(reference: str, hypothesis: str) -> float:
    return jiwer.wer(_normalize(reference), _normalize(hypothesis))
