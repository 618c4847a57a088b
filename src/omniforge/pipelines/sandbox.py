"""Running untrusted Python in a subprocess with resource limits: time, memory, CPU, processes, file size.

What it does, for every run:
- a fresh temporary working directory (the code and any extra files are written there), deleted
  afterwards, with HOME and TMPDIR pointing into it;
- an empty environment (a fixed PATH, a UTF-8 locale, one thread for numeric libraries): none of
  the caller's variables (OMNIFORGE_*, tokens, HOME) reach the code; `python -I -B -X utf8`
  (isolated mode: no PYTHON* variables, no user site-packages); stdin is closed (/dev/null);
- limits set by the child on itself before the code runs, soft and hard alike so the code cannot
  raise them: RLIMIT_AS (address space: a memory bomb gets MemoryError), RLIMIT_CPU (CPU seconds:
  SIGXCPU), RLIMIT_FSIZE (the largest file it may write), RLIMIT_NPROC (processes) and no core
  dumps; a wall-clock timeout kills the whole process group;
- run as root, the code drops to an unprivileged user ("nobody"), because the kernel does not
  apply RLIMIT_NPROC to root: the interpreter is then one that user can execute (the system's
  python3 when the current one lives under /root);
- afterwards every process of the run is killed: its process group, and any process that still
  carries the run's marker variable (one that left the group with setsid keeps it);
- stdout and stderr are captured up to a limit (the head and the tail are kept, the middle cut).

What it does NOT do (there are no namespaces, seccomp or containers here):
- the network is NOT isolated: the code can open sockets and reach whatever the machine reaches;
- the file system is NOT hidden: the code can read every file its user can read, and write
  outside its working directory wherever its user may write (run as root it is "nobody", who
  may write to world-writable places such as /tmp; otherwise it is the caller's own user, who
  may write to the caller's files, and read the caller's environment in /proc). Only the
  working directory is cleaned up;
- RLIMIT_NPROC counts every process of the user, so it is set to the user's current count plus
  the allowance: processes that user starts elsewhere at the same time share the allowance;
- a process that both clears its environment and leaves the process group can outlive the run;
  it stays bound by the CPU, memory and file-size limits it inherited;
- RLIMIT_AS limits address space, not resident memory: code that maps large sparse regions hits
  it early, and a run as root that cannot drop privileges has no process limit (it is logged).
Use it to check code a model wrote, not to host an adversary.
"""

from __future__ import annotations

import logging
import os
import pwd
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidRequestError

log = logging.getLogger("omniforge.sandbox")

MARKER = "SANDBOX_RUN_ID"  # set in the child: an id that finds its processes, no secret
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
MAIN = "main.py"
_LOST = -1  # a wait status no real one equals: the child was reaped elsewhere

# The child runs this before the code: it limits itself, drops root if asked, then runs main.py
# as __main__ with the working directory importable (isolated mode leaves it off sys.path), and
# prints a traceback without these frames.
_BOOT = r"""
import os, resource, runpy, sys, traceback
_a = sys.argv[1:]
_mem, _cpu, _fsize, _nproc, _uid, _gid = (int(x) for x in _a[:6])
def _lim(which, value):
    if value >= 0:
        resource.setrlimit(which, (value, value))
_lim(resource.RLIMIT_CORE, 0)
_lim(resource.RLIMIT_AS, _mem)
_lim(resource.RLIMIT_FSIZE, _fsize)
if _cpu >= 0:
    resource.setrlimit(resource.RLIMIT_CPU, (_cpu, _cpu + 1))
_lim(resource.RLIMIT_NPROC, _nproc)
if _uid >= 0:
    os.setgroups([])
    os.setgid(_gid)
    os.setuid(_uid)
_path = os.path.abspath("main.py")
sys.path.insert(0, os.getcwd())
sys.argv = ["main.py"]
del _a, _mem, _cpu, _fsize, _nproc, _uid, _gid, _lim
try:
    runpy.run_path(_path, run_name="__main__")
except SystemExit:
    raise
except BaseException as _e:
    _tb = _e.__traceback__
    while _tb is not None and _tb.tb_frame.f_code.co_filename != _path:
        _tb = _tb.tb_next
    traceback.print_exception(type(_e), _e, _tb or _e.__traceback__)
    sys.stderr.flush()
    os._exit(1)
"""


@dataclass(frozen=True)
class SandboxLimits:
    """The limits of one run. memory_mb bounds each process's address space; cpu_s each
    process's CPU time (default: the timeout, rounded up, plus one)."""

    timeout_s: float = 10.0
    memory_mb: int = 512
    cpu_s: int | None = None
    max_processes: int = 16
    max_file_mb: int = 16
    max_output_chars: int = 20_000  # per stream, counted in bytes of UTF-8

    def __post_init__(self) -> None:
        checks = (("timeout_s", self.timeout_s, 0.1, 3600), ("memory_mb", self.memory_mb, 32, 1 << 20),
                  ("max_processes", self.max_processes, 1, 4096), ("max_file_mb", self.max_file_mb, 0, 1 << 20),
                  ("max_output_chars", self.max_output_chars, 256, 1 << 26))
        for name, value, low, high in checks:
            if not isinstance(value, int | float) or not low <= value <= high:
                raise InvalidRequestError(f"sandbox {name} must be between {low} and {high}, not {value!r}",
                                          param=name)
        if self.cpu_s is not None and not 1 <= self.cpu_s <= 3600:
            raise InvalidRequestError(f"sandbox cpu_s must be between 1 and 3600, not {self.cpu_s!r}",
                                      param="cpu_s")

    @property
    def cpu_seconds(self) -> int:
        return self.cpu_s if self.cpu_s is not None else int(self.timeout_s + 0.999) + 1


@dataclass
class SandboxResult:
    exit_code: int | None  # negative: killed by that signal (as subprocess reports it)
    stdout: str
    stderr: str
    timed_out: bool = False  # the wall-clock timeout killed it
    memory_exceeded: bool = False  # it ran out of its address-space limit
    cpu_exceeded: bool = False  # RLIMIT_CPU killed it (SIGXCPU)
    seconds: float = 0.0
    max_rss_mb: float = 0.0  # peak resident memory of the main process (sampled every 20 ms)
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    user: str = ""  # who the code ran as
    process_limit: bool = True  # whether RLIMIT_NPROC applied
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """It exited with status 0 on its own."""
        return self.exit_code == 0 and not (self.timed_out or self.memory_exceeded or self.cpu_exceeded)

    @property
    def reason(self) -> str:
        """One phrase: why it ended."""
        if self.timed_out:
            return f"timed out after {self.seconds:.1f} s"
        if self.memory_exceeded:
            return "ran out of memory (the sandbox's limit)"
        if self.cpu_exceeded:
            return "used up its CPU time"
        if self.exit_code is not None and self.exit_code < 0:
            try:
                return f"killed by {signal.Signals(-self.exit_code).name}"
            except ValueError:
                return f"killed by signal {-self.exit_code}"
        if self.exit_code is None:
            return "ended, its exit status unknown"
        return "exited normally" if self.exit_code == 0 else f"exited with status {self.exit_code}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok, "reason": self.reason}


# -- who runs it ------------------------------------------------------------------------------
def _usable_by_others(path: str) -> bool:
    """Whether a user without privileges can execute `path` (every folder above it searchable)."""
    real = Path(os.path.realpath(path))
    try:
        if not real.stat().st_mode & stat.S_IXOTH:
            return False
        return all(p.stat().st_mode & stat.S_IXOTH for p in real.parents)
    except OSError:
        return False


def _plan(python: str | None, run_as: str) -> tuple[str, int, int, str]:
    """(interpreter, uid, gid, user name); uid -1 keeps the current user."""
    me = pwd.getpwuid(os.getuid()).pw_name if os.getuid() >= 0 else str(os.getuid())
    if os.geteuid() != 0:
        return python or sys.executable, -1, -1, me
    try:
        entry = pwd.getpwnam(run_as)
    except KeyError:
        log.warning("sandbox: user %r does not exist; code runs as root without a process limit", run_as)
        return python or sys.executable, -1, -1, "root"
    candidates = [python] if python else [sys.executable, shutil.which("python3", path=SAFE_PATH)]
    for candidate in candidates:
        if candidate and _usable_by_others(candidate):
            return candidate, entry.pw_uid, entry.pw_gid, run_as
    log.warning("sandbox: no Python that %r may execute (%s); code runs as root without a process limit",
                run_as, ", ".join(c for c in candidates if c))
    return python or sys.executable, -1, -1, "root"


def _tasks_of(uid: int) -> int:
    """How many tasks (processes and threads) `uid` has now: RLIMIT_NPROC counts them all."""
    count = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", encoding="ascii", errors="replace") as fh:
                uid_line = threads = None
                for line in fh:
                    if line.startswith("Uid:"):
                        uid_line = int(line.split()[1])
                    elif line.startswith("Threads:"):
                        threads = int(line.split()[1])
                        break
        except (OSError, ValueError, IndexError):
            continue
        if uid_line == uid:
            count += threads or 1
    return count


# -- capture ----------------------------------------------------------------------------------
class _Capture:
    """The first and last halves of a stream up to `limit` bytes, and how much there was."""

    def __init__(self, limit: int) -> None:
        self.half = max(limit // 2, 1)
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > self.half:
                del self.tail[: len(self.tail) - self.half]

    @property
    def truncated(self) -> bool:
        return self.total > len(self.head) + len(self.tail)

    def text(self) -> str:
        head = self.head.decode("utf-8", errors="replace")
        tail = self.tail.decode("utf-8", errors="replace")
        if not self.truncated:
            return head + tail
        cut = self.total - len(self.head) - len(self.tail)
        return f"{head}\n[... {cut} bytes cut by the sandbox ...]\n{tail}"


# -- running ----------------------------------------------------------------------------------
def run_python(code: str, *, files: dict[str, str | bytes] | None = None, limits: SandboxLimits | None = None,
               python: str | None = None, run_as: str = "nobody") -> SandboxResult:
    """Run `code` as main.py in a fresh temporary directory with `limits`; `files` are written
    beside it (relative names only). Never raises for what the code does; see the module notes
    for what is and is not isolated."""
    if not isinstance(code, str):
        raise InvalidRequestError("code must be a string", param="code")
    limits = limits or SandboxLimits()
    interpreter, uid, gid, user = _plan(python, run_as)
    workdir = Path(tempfile.mkdtemp(prefix="omniforge-sandbox-"))
    try:
        _write(workdir, {**(files or {}), MAIN: code}, uid, gid)
        return _run(workdir, interpreter, uid, gid, user, limits)
    finally:
        _remove(workdir)


def _write(workdir: Path, files: dict[str, str | bytes], uid: int, gid: int) -> None:
    for name, content in files.items():
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise InvalidRequestError(f"sandbox file name {name!r} must be a relative path inside the work folder",
                                      param="files")
        target = workdir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode() if isinstance(content, str) else content)
    if uid >= 0:
        for root, dirs, names in os.walk(workdir):
            for entry in [root, *(os.path.join(root, n) for n in dirs + names)]:
                os.chown(entry, uid, gid)


def _remove(workdir: Path) -> None:
    def unlock(func: Any, path: str, _exc: Any) -> None:  # the code may have made things read-only
        try:
            os.chmod(os.path.dirname(path), 0o700)
            os.chmod(path, 0o700)
            func(path)
        except OSError:
            pass

    shutil.rmtree(workdir, onerror=unlock)


def _run(workdir: Path, interpreter: str, uid: int, gid: int, user: str, limits: SandboxLimits) -> SandboxResult:
    run_id = uuid.uuid4().hex
    env = {"PATH": SAFE_PATH, "HOME": str(workdir), "TMPDIR": str(workdir), "LANG": "C.UTF-8",
           "LC_ALL": "C.UTF-8", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           MARKER: run_id}
    nproc = -1
    process_limit = uid >= 0 or os.geteuid() != 0
    if process_limit:
        nproc = _tasks_of(uid if uid >= 0 else os.getuid()) + limits.max_processes + 1
    args = [str(limits.memory_mb * 2**20), str(limits.cpu_seconds), str(limits.max_file_mb * 2**20), str(nproc),
            str(uid), str(gid)]
    started = time.monotonic()
    proc = subprocess.Popen([interpreter, "-I", "-B", "-X", "utf8", "-c", _BOOT, *args], cwd=workdir, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    out, err = _Capture(limits.max_output_chars), _Capture(limits.max_output_chars)
    timed_out, status, peak_kb = False, None, 0
    deadline = started + limits.timeout_s
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, out)  # type: ignore[arg-type]
    sel.register(proc.stderr, selectors.EVENT_READ, err)  # type: ignore[arg-type]
    try:
        while status is None:
            _pump(sel, min(0.02, max(deadline - time.monotonic(), 0)))
            peak_kb = max(peak_kb, _high_water_kb(proc.pid))
            try:
                pid, status_raw = os.waitpid(proc.pid, os.WNOHANG)
            except ChildProcessError:  # something else in this process reaped it: the status is lost
                pid, status_raw = proc.pid, _LOST
            if pid:
                status = status_raw
            elif time.monotonic() >= deadline:
                timed_out = True
                _kill_group(proc.pid)
                try:
                    _, status = os.waitpid(proc.pid, 0)
                except ChildProcessError:
                    status = _LOST
        seconds = time.monotonic() - started
        _sweep(proc.pid, run_id)
        drain_until = time.monotonic() + 1.0
        while sel.get_map() and time.monotonic() < drain_until:  # what was written before the end
            _pump(sel, 0.05)
    finally:
        sel.close()
        for stream in (proc.stdout, proc.stderr):
            stream.close()  # type: ignore[union-attr]
        if status is None:  # an error in here: leave nothing running
            _kill_group(proc.pid)
            proc.wait()
    proc.returncode = None if status == _LOST else os.waitstatus_to_exitcode(status)
    result = _result(proc.returncode, out, err, timed_out, seconds, peak_kb, limits, user, process_limit)
    prefix = f"{workdir}{os.sep}"  # tracebacks name main.py, not the temporary folder
    result.stdout, result.stderr = result.stdout.replace(prefix, ""), result.stderr.replace(prefix, "")
    return result


def _pump(sel: selectors.BaseSelector, timeout: float) -> None:
    if not sel.get_map():
        time.sleep(timeout)
        return
    for key, _ in sel.select(timeout):
        try:
            data = os.read(key.fd, 65536)
        except OSError:
            data = b""
        if data:
            key.data.add(data)
        else:
            sel.unregister(key.fileobj)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _marked(run_id: str) -> list[int]:
    """Processes whose environment carries this run's marker."""
    needle = f"{MARKER}={run_id}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                if needle in fh.read():
                    found.append(int(name))
        except OSError:
            continue
    return found


def _sweep(pgid: int, run_id: str) -> None:
    """Kill what the run left behind: its process group, then every process with its marker,
    again until none is left (a fork loop races the first pass)."""
    for _ in range(50):
        _kill_group(pgid)
        left = [pid for pid in _marked(run_id) if not _is_zombie(pid)]
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.02)
    log.warning("sandbox run %s: processes still alive after the sweep", run_id)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def _high_water_kb(pid: int) -> int:
    """The peak resident memory of `pid` so far (VmHWM: its own, not the parent's before exec)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _result(code: int | None, out: _Capture, err: _Capture, timed_out: bool, seconds: float, peak_kb: int,
            limits: SandboxLimits, user: str, process_limit: bool) -> SandboxResult:
    stderr = err.text()
    rss_mb = peak_kb / 1024
    lines = [line.strip() for line in stderr.splitlines()]
    memory = any(line.startswith("MemoryError") for line in lines) or (
        not timed_out and code in (-signal.SIGKILL, -signal.SIGSEGV, -signal.SIGABRT)
        and any(hint in stderr for hint in ("Cannot allocate memory", "bad_alloc", "out of memory")))
    cpu = code == -signal.SIGXCPU
    return SandboxResult(exit_code=code, stdout=out.text(), stderr=stderr, timed_out=timed_out,
                         memory_exceeded=memory, cpu_exceeded=cpu, seconds=round(seconds, 3),
                         max_rss_mb=round(rss_mb, 1), stdout_truncated=out.truncated, stderr_truncated=err.truncated,
                         user=user, process_limit=process_limit)


__all__ = ["MARKER", "SandboxLimits", "SandboxResult", "run_python"]
