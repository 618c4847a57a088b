"""The sandbox: untrusted Python runs with a timeout, memory, CPU, process and file-size limits, in an empty
environment and a temporary folder, and nothing it started outlives the run."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from omniforge.errors import InvalidRequestError
from omniforge.pipelines.sandbox import SandboxLimits, run_python


def _alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie waiting to be reaped is not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def _shared_folder(tmp_path: Path) -> Path:
    """A folder the sandboxed code may write to whoever it runs as (root runs it as nobody)."""
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o777)
    for parent in folder.parents:
        if parent == Path(os.sep) or parent == Path("/tmp"):
            break
        parent.chmod(parent.stat().st_mode | 0o011)
    return folder


def test_a_normal_run_gives_output_exit_code_and_time() -> None:
    result = run_python("import sys\nprint('hello')\nprint('oops', file=sys.stderr)\n")
    assert result.ok and result.exit_code == 0
    assert result.stdout == "hello\n" and result.stderr == "oops\n"
    assert not (result.timed_out or result.memory_exceeded or result.stdout_truncated)
    assert 0 < result.seconds < 10 and result.reason == "exited normally"


def test_the_exit_status_and_a_clean_traceback_come_back() -> None:
    result = run_python("def f():\n    raise ValueError('bad input')\n\nf()\n")
    assert result.exit_code == 1 and not result.ok
    assert 'File "main.py", line 4' in result.stderr and "ValueError: bad input" in result.stderr
    assert "runpy" not in result.stderr and "omniforge-sandbox-" not in result.stderr
    assert run_python("import sys\nsys.exit(3)\n").exit_code == 3


def test_the_environment_is_empty_and_python_isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNIFORGE_API_KEY", "secret-key")
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    result = run_python("import os, sys\nprint(sorted(os.environ))\nprint(sys.flags.isolated)\n"
                        "print(os.environ['HOME'] == os.getcwd())\n")
    names, isolated, home_is_workdir = result.stdout.splitlines()
    assert "OMNIFORGE" not in names and "PYTHONPATH" not in names and "secret" not in result.stdout
    assert isolated == "1" and home_is_workdir == "True"


def test_the_working_folder_is_fresh_importable_and_removed_afterwards() -> None:
    result = run_python("import os, helper\nprint(os.getcwd())\nprint(sorted(os.listdir('.')))\nprint(helper.X)\n",
                        files={"helper.py": "X = 41 + 1\n"})
    folder, listing, value = result.stdout.splitlines()
    assert listing == "['helper.py', 'main.py']" and value == "42"
    assert not Path(folder).exists()
    with pytest.raises(InvalidRequestError):
        run_python("pass", files={"../escape.py": ""})


def test_stdin_is_closed() -> None:
    started = time.monotonic()
    result = run_python("input('name? ')\n", limits=SandboxLimits(timeout_s=5))
    assert "EOFError" in result.stderr and not result.timed_out
    assert time.monotonic() - started < 5


def test_a_timeout_kills_the_code_and_its_children() -> None:
    code = ("import subprocess, sys, time\n"
            "kid = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            "loner = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True)\n"
            "print(kid.pid, loner.pid, flush=True)\n"
            "time.sleep(60)\n")
    started = time.monotonic()
    result = run_python(code, limits=SandboxLimits(timeout_s=2))
    assert result.timed_out and not result.ok and "timed out" in result.reason
    assert time.monotonic() - started < 10
    kid, loner = (int(p) for p in result.stdout.split())
    deadline = time.monotonic() + 3
    while (_alive(kid) or _alive(loner)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(kid), "a child in the process group survived the timeout"
    assert not _alive(loner), "a child that left the process group survived the timeout"


def test_a_background_process_does_not_outlive_a_finished_run() -> None:
    code = ("import subprocess, sys\n"
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True,\n"
            "                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
            "print(p.pid)\n")
    started = time.monotonic()
    result = run_python(code, limits=SandboxLimits(timeout_s=20))
    assert result.ok and time.monotonic() - started < 10
    pid = int(result.stdout)
    deadline = time.monotonic() + 3
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def test_a_memory_bomb_is_stopped() -> None:
    big = run_python("x = bytearray(4 * 1024 ** 3)\n", limits=SandboxLimits(memory_mb=256))
    assert big.memory_exceeded and not big.ok and "memory" in big.reason
    growing = run_python("chunks = []\nwhile True:\n    chunks.append(b'x' * 2 ** 20)\n",
                         limits=SandboxLimits(memory_mb=200, timeout_s=20))
    assert growing.memory_exceeded and not growing.timed_out
    assert growing.max_rss_mb < 260


def test_a_fork_bomb_is_contained(tmp_path: Path) -> None:
    if not run_python("pass").process_limit:
        pytest.skip("running as root with no unprivileged user that can run Python: no process limit applies")
    pids = _shared_folder(tmp_path) / "pids"
    code = (f"import os, time\nlog = open({str(pids)!r}, 'a', buffering=1)\nrefused = 0\n"
            "while True:\n"
            "    try:\n"
            "        pid = os.fork()\n"
            "    except OSError:\n"
            "        refused += 1\n"
            "        if refused == 1:\n"
            "            print('refused', flush=True)\n"
            "        time.sleep(0.005)\n"
            "        continue\n"
            "    if pid == 0:\n"
            "        log.write(f'{os.getpid()}\\n')\n")
    started = time.monotonic()
    result = run_python(code, limits=SandboxLimits(timeout_s=3, max_processes=8))
    assert result.timed_out and time.monotonic() - started < 15
    assert "refused" in result.stdout, "the process limit never refused a fork"
    forked = [int(line) for line in pids.read_text().split()]
    # the allowance, plus what other runs as the same user freed meanwhile (RLIMIT_NPROC is per user)
    assert 0 < len(forked) <= 8 + 16
    deadline = time.monotonic() + 3
    while any(_alive(p) for p in forked) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in forked)


def test_cpu_time_is_limited() -> None:
    result = run_python("while True:\n    pass\n", limits=SandboxLimits(timeout_s=30, cpu_s=1))
    assert result.cpu_exceeded and not result.timed_out and not result.ok
    assert result.seconds < 25


def test_output_is_truncated_keeping_head_and_tail() -> None:
    result = run_python("print('START' + 'x' * 1_000_000 + 'END')\n", limits=SandboxLimits(max_output_chars=1000))
    assert result.stdout_truncated and result.ok
    assert result.stdout.startswith("START") and result.stdout.rstrip().endswith("END")
    assert len(result.stdout) < 1100 and "bytes cut by the sandbox" in result.stdout


def test_file_size_is_limited() -> None:
    result = run_python("open('big.bin', 'wb').write(b'x' * 3 * 2 ** 20)\n", limits=SandboxLimits(max_file_mb=1))
    assert not result.ok and "File too large" in result.stderr


def test_writes_outside_the_working_folder_are_not_prevented(tmp_path: Path) -> None:
    """Documented, not a promise: without namespaces the code can write wherever its user may."""
    target = _shared_folder(tmp_path) / "written-by-sandbox.txt"
    result = run_python(f"open({str(target)!r}, 'w').write('outside')\n")
    assert result.ok and target.read_text() == "outside"


def test_limits_are_checked() -> None:
    for bad in ({"timeout_s": 0}, {"memory_mb": 1}, {"max_processes": 0}, {"cpu_s": 0}):
        with pytest.raises(InvalidRequestError):
            SandboxLimits(**bad)
