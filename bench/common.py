"""Shared bench plumbing: statistics, machine info, interleaved repeats and server subprocesses."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import importlib.metadata
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
SHARED_CACHE = Path("/tmp/omniforge-test-cache")  # model cache the test suite already filled
PACKAGES = (
    "omniforge",
    "llama-cpp-python",
    "piper-tts",
    "onnxruntime",
    "faster-whisper",
    "ctranslate2",
    "openai",
    "fastapi",
    "uvicorn",
    "starlette",
    "sse-starlette",
    "jiwer",
    "numpy",
)
SETTLE_S = 0.3  # pause between timed runs so the previous engine's spinning threads go idle


# -- statistics ------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty sequence."""
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summary(values: Sequence[float]) -> dict[str, float]:
    """median, p5, p95, min, max and n of the repeats."""
    vals = [float(v) for v in values]
    if not vals:
        return {"n": 0}
    return {
        "median": statistics.median(vals),
        "p5": percentile(vals, 5),
        "p95": percentile(vals, 95),
        "min": min(vals),
        "max": max(vals),
        "n": len(vals),
    }


def interleave(variants: Sequence[str], repeats: int) -> Iterator[tuple[int, str]]:
    """(repeat, variant) pairs, the variant order rotated every repeat so none always goes first."""
    for i in range(repeats):
        k = i % len(variants)
        for name in list(variants[k:]) + list(variants[:k]):
            yield i, name


# -- machine ---------------------------------------------------------------------------------
def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def source_digest() -> str:
    """SHA-256 (12 hex) of src/omniforge/**/*.py: which code a run measured, committed or not."""
    h = hashlib.sha256()
    for path in sorted((SRC / "omniforge").rglob("*.py")):
        h.update(path.relative_to(SRC).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def git_dirty() -> bool:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "src"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return True
    return bool(out.strip())


def machine_info(threads: int) -> dict[str, Any]:
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "threads_used": threads,
        "loadavg_start": loadavg(),
        "git_commit": git_commit(),
        "src_uncommitted_changes": git_dirty(),
        "src_sha256": source_digest(),
        "versions": versions(),
    }


# -- subprocess servers ----------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


class Server:
    """A server subprocess whose output goes to a log file; ready when `ready_path` answers 200."""

    def __init__(
        self, name: str, argv: list[str], port: int, log: Path, env: dict[str, str], ready_path: str = "/v1/models"
    ) -> None:
        self.name, self.argv, self.port, self.log, self.env, self.ready_path = name, argv, port, log, env, ready_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.base_url = f"http://127.0.0.1:{port}"

    def start(self, timeout_s: float = 180.0) -> Server:
        log = self.log.open("wb")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=REPO)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; last lines:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base_url + self.ready_path, timeout=2.0).status_code == 200:
                    return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer {self.ready_path} within {timeout_s:.0f} s:\n{self.tail()}")

    def tail(self, n: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def prepare_home(home: Path) -> Path:
    """An OMNIFORGE_HOME whose cache is the shared one, so the joined gemma GGUF is made once."""
    home.mkdir(parents=True, exist_ok=True)
    cache = home / "cache"
    if SHARED_CACHE.is_dir() and not cache.exists():
        cache.symlink_to(SHARED_CACHE)
    return home


def omniforge_server(home: Path, threads: int) -> Server:
    """`python -m omniforge serve` with its own home and thread count."""
    prepare_home(home)
    port = free_port()
    env = child_env(OMNIFORGE_HOME=str(home), OMNIFORGE_THREADS=str(threads))
    argv = [sys.executable, "-m", "omniforge", "serve", "--port", str(port)]
    return Server("omniforge", argv, port, home / "omniforge-server.log", env)


def llama_cpp_server(model: Path, threads: int, n_ctx: int, n_batch: int, logdir: Path) -> Server:
    """llama-cpp-python's own OpenAI server on the same GGUF, threads, context and batch."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        "gemma-3-270m",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_threads",
        str(threads),
        "--n_threads_batch",
        str(threads),
        "--n_ctx",
        str(n_ctx),
        "--n_batch",
        str(n_batch),
        "--logits_all",
        "false",  # its default (true) keeps logits for every prompt token; the others don't
        "--interrupt_requests",
        "false",  # its default cancels a running stream when a new request comes
        "--verbose",
        "false",
    ]
    return Server("llama_cpp.server", argv, port, logdir / "llama-cpp-server.log", child_env())


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out
