"""The code-assistant step kinds: write, run (in the sandbox), explain, fix and test Python code with the text model.

The prompts are few-shot completions (`service.complete`), so a small base model such as the
embedded gemma-3-270m follows the pattern; an instruction-tuned model reads them as well. Code the
model writes and the tests it writes run in `sandbox.run_python` (time, memory, CPU, process and
file-size limits) and the run's result is part of every answer that involves code.
"""

from __future__ import annotations

import ast
import re
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequestError
from ..types import GenerationParams
from .artifacts import is_ref
from .sandbox import SandboxLimits, SandboxResult, run_python
from .steps import StepContext, register_step

if TYPE_CHECKING:
    from ..service import Service

MODES = ("generate", "explain", "fix", "test")
MAX_TIMEOUT_S = 60.0
MAX_MEMORY_MB = 2048
MAX_CODE_CHARS = 100_000
_FENCE = re.compile(r"^[ \t]*(```|~~~)[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:^[ \t]*\1[ \t]*$|\Z)", re.MULTILINE | re.DOTALL)
_CODE_START = re.compile(r"^(def |class |import |from |@|async def |if __name__|[A-Za-z_][\w.]*\s*(=|\())")
_PY_TAGS = {"python", "py", "python3", "py3", ""}

# -- prompts (few-shot: a base model continues the pattern) ---------------------------------------
_WRITE = '''# Python 3. Each task is solved by one complete, runnable Python code block.

### Task
Return the sum of two numbers a and b.
### Solution
```python
def add(a, b):
    return a + b
```

### Task
Count how many times a character appears in a string.
### Solution
```python
def count_char(text, char):
    count = 0
    for c in text:
        if c == char:
            count += 1
    return count
```

### Task
{task}
### Solution
```python
'''

_EXPLAIN = '''### Code
```python
def add(a, b):
    return a + b
```
### Explanation
The function add takes two numbers, a and b, and returns their sum.

### Code
```python
def count_char(text, char):
    return sum(1 for c in text if c == char)
```
### Explanation
The function count_char counts how many characters of text are equal to char and returns that number.

### Code
```python
{code}
```
### Explanation
'''

_FIX = '''### Code
```python
def add(a, b):
    return a - b
```
### Error
AssertionError: add(2, 3) should be 5
### Fixed code
```python
def add(a, b):
    return a + b
```

### Code
```python
def first(items):
    return items[1]
```
### Error
IndexError: list index out of range
### Fixed code
```python
def first(items):
    return items[0]
```

### Code
```python
{code}
```
### Error
{error}
### Fixed code
```python
'''

_TESTS = '''### Code
```python
def add(a, b):
    return a + b
```
### Tests
```python
assert add(2, 3) == 5
assert add(-1, 1) == 0
assert add(0, 0) == 0
```

### Code
```python
def is_even(n):
    return n % 2 == 0
```
### Tests
```python
assert is_even(4) is True
assert is_even(7) is False
assert is_even(0) is True
```

### Code
```python
{code}
```
### Tests
```python
'''

# Appended after the code and the tests: calls the test_* functions and unittest cases the tests
# define but do not call, and fails the run when one fails.
_HARNESS = '''

# -- added by omniforge: run the tests defined above --------------------------------------------
def __omniforge_run_tests():
    import inspect, sys, traceback, unittest
    names = [n for n, f in list(globals().items()) if n.startswith("test") and inspect.isfunction(f)
             and not inspect.signature(f).parameters]
    failed = 0
    for name in names:
        try:
            globals()[name]()
        except Exception:
            failed += 1
            print(f"FAILED {name}", file=sys.stderr)
            traceback.print_exc()
        else:
            print(f"passed {name}")
    cases = [c for c in list(globals().values()) if inspect.isclass(c) and issubclass(c, unittest.TestCase)
             and c is not unittest.TestCase]
    if cases:
        suite = unittest.TestSuite(unittest.defaultTestLoader.loadTestsFromTestCase(c) for c in cases)
        result = unittest.TextTestRunner(stream=sys.stderr, verbosity=1).run(suite)
        failed += len(result.failures) + len(result.errors)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    __omniforge_run_tests()
'''


# -- code extraction ------------------------------------------------------------------------------
def extract_code(text: str) -> str:
    """The Python code in a model's reply: the first fenced block tagged Python (else the longest
    fenced block; an unclosed fence runs to the end), else the longest leading stretch of lines that
    parses, starting at the first line that looks like code. Prose around it is dropped."""
    text = (text or "").replace("\r\n", "\n")
    blocks = [(m.group(2).lower(), m.group(3)) for m in _FENCE.finditer(text)]
    if blocks:
        tagged = [body for tag, body in blocks if tag in _PY_TAGS and body.strip()]
        body = tagged[0] if tagged else max((b for _, b in blocks), key=len)
        return _parseable_prefix(body.strip("\n")) or body.strip("\n")
    lines = text.split("\n")
    start = next((i for i, line in enumerate(lines) if _CODE_START.match(line)), None)
    if start is None:
        return ""
    return _parseable_prefix("\n".join(lines[start:]).strip("\n"))


def _parseable_prefix(code: str) -> str:
    """The longest run of whole leading lines of `code` that Python parses ("" if none)."""
    lines = code.rstrip().split("\n")
    for end in range(len(lines), 0, -1):
        candidate = "\n".join(lines[:end]).rstrip()
        if not candidate.strip():
            continue
        try:
            ast.parse(candidate)
        except (SyntaxError, ValueError):
            continue
        return candidate
    return ""


def cut_at(completion: str, stops: tuple[str, ...] | list[str]) -> str:
    """`completion` cut at the first of `stops` (the model may run past a stop it was not given)."""
    cut = len(completion)
    for stop in stops:
        at = completion.find(stop)
        if at != -1:
            cut = min(cut, at)
    return completion[:cut]


# -- running --------------------------------------------------------------------------------------
def program(code: str, tests: str | None) -> str:
    """The file the sandbox runs: the code, then the tests and a runner for the test functions."""
    if not tests or not tests.strip():
        return code
    return f"{code.rstrip()}\n\n\n# -- tests --\n{tests.rstrip()}\n{_HARNESS}"


def run_code(code: str, tests: str | None = None, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run `code` (with `tests` after it, when given) in the sandbox; tests may also `import solution`."""
    return run_python(program(code, tests), files={"solution.py": code}, limits=limits)


def report(result: SandboxResult, tests: bool) -> str:
    """One short paragraph about a sandbox run, for an answer."""
    what = "the code and its tests" if tests else "the code"
    verdict = ("passed" if tests else "ran without error") if result.ok else f"failed: {result.reason}"
    lines = [f"Sandbox run of {what} {verdict} ({result.seconds:.2f} s)."]
    if result.stdout.strip():
        lines.append("stdout:\n" + _tail(result.stdout, 1500))
    if result.stderr.strip():
        lines.append("stderr:\n" + _tail(result.stderr, 1500))
    return "\n".join(lines)


def error_of(result: SandboxResult) -> str:
    """What went wrong in a run, short enough for a prompt: the end of its traceback."""
    if result.timed_out or result.memory_exceeded or result.cpu_exceeded:
        return f"The program {result.reason}."
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    return "\n".join(lines[-6:]) or f"The program {result.reason}."


def _tail(text: str, limit: int) -> str:
    text = text.rstrip()
    return text if len(text) <= limit else "..." + text[-limit:]


# -- model calls ----------------------------------------------------------------------------------
def _complete(service: Service, prompt: str, args: dict[str, Any], max_tokens: int, stops: list[str]) -> str:
    params = GenerationParams(temperature=float(args.get("temperature", 0.0)),
                              max_tokens=int(args.get("max_tokens", max_tokens)),
                              seed=None if args.get("seed") is None else int(args["seed"]), stop=stops[:4])
    text = service.complete(prompt, args.get("model"), params)[0].text
    return cut_at(text, stops)


def _fenced(service: Service, prompt: str, args: dict[str, Any], max_tokens: int) -> str:
    """Complete a prompt that opened a Python fence; the code up to the closing fence."""
    raw = _complete(service, prompt, args, max_tokens, ["```", "\n### "])
    return _parseable_prefix(raw.strip("\n")) or extract_code(raw) or raw.strip("\n")


def write_code(service: Service, task: str, args: dict[str, Any] | None = None, stub: str | None = None) -> str:
    """Python code for `task`; with `stub` (a signature and docstring), the stub completed."""
    args = args or {}
    if stub and stub.strip():
        body = _complete(service, stub, args, 384, ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#"])
        return (stub + body).rstrip() + "\n"
    return _fenced(service, _WRITE.format(task=task.strip()), args, 384)


def explain_code(service: Service, code: str, args: dict[str, Any] | None = None) -> str:
    text = _complete(service, _EXPLAIN.format(code=code.strip("\n")), args or {}, 200, ["\n###", "```", "\n\n\n"])
    return text.strip()


def fix_code(service: Service, code: str, error: str, args: dict[str, Any] | None = None) -> str:
    return _fenced(service, _FIX.format(code=code.strip("\n"), error=error.strip() or "It does not work."),
                   args or {}, 384)


def write_tests(service: Service, code: str, args: dict[str, Any] | None = None) -> str:
    return _fenced(service, _TESTS.format(code=code.strip("\n")), args or {}, 160)


# -- step kinds -----------------------------------------------------------------------------------
def _text(args: dict[str, Any], name: str, ctx: StepContext, required: bool = False) -> str:
    """A text argument that may also come as a document artifact (a .py file given as input)."""
    value = args.get(name)
    if is_ref(value):
        data, _, _ = ctx.read(value, name)
        value = data.decode("utf-8", errors="replace")
    value = "" if value is None else str(value)
    if len(value) > MAX_CODE_CHARS:
        raise InvalidRequestError(f"'{name}' is longer than {MAX_CODE_CHARS} characters", param=name)
    if required and not value.strip():
        raise InvalidRequestError(f"step '{ctx.step}' needs '{name}'", param=name)
    return value


def _limits(args: dict[str, Any]) -> SandboxLimits:
    timeout = float(args.get("timeout") or 10.0)
    memory = int(args.get("memory_mb") or 512)
    if not 0.1 <= timeout <= MAX_TIMEOUT_S:
        raise InvalidRequestError(f"timeout must be between 0.1 and {MAX_TIMEOUT_S:g} seconds", param="timeout")
    if not 32 <= memory <= MAX_MEMORY_MB:
        raise InvalidRequestError(f"memory_mb must be between 32 and {MAX_MEMORY_MB}", param="memory_mb")
    return SandboxLimits(timeout_s=timeout, memory_mb=memory)


def _run_fields(result: SandboxResult | None, tests: bool) -> dict[str, Any]:
    if result is None:
        return {"passed": None, "run": "", "stdout": "", "stderr": "", "exit_code": None}
    return {"passed": result.ok, "run": report(result, tests), "stdout": result.stdout, "stderr": result.stderr,
            "exit_code": result.exit_code}


def write_code_step(service: Service, args: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    task = _text(args, "task", ctx)
    stub = _text(args, "code", ctx)
    if not task.strip() and not stub.strip():
        raise InvalidRequestError(f"step '{ctx.step}' needs a 'task' (or a 'code' stub to complete)", param="task")
    return {"code": write_code(service, task, args, stub or None)}


def run_code_step(service: Service, args: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    code, tests = _text(args, "code", ctx, required=True), _text(args, "tests", ctx)
    result = run_code(code, tests or None, _limits(args))
    return {**_run_fields(result, bool(tests.strip())), "timed_out": result.timed_out,
            "memory_exceeded": result.memory_exceeded, "seconds": result.seconds, "reason": result.reason}


def explain_code_step(service: Service, args: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    return {"text": explain_code(service, _text(args, "code", ctx, required=True), args)}


def fix_loop(service: Service, code: str, error: str, tests: str, args: dict[str, Any],
             limits: SandboxLimits, ctx: StepContext | None = None) -> dict[str, Any]:
    """Fix `code`: run it (with `tests`) to learn the error when none is given; then up to two
    rounds of fix-and-run (the second sees the first fix's error). Returns the last fix."""
    result = None
    if not error.strip():
        result = run_code(code, tests or None, limits)
        if result.ok:
            return {"code": code, "attempts": 0, **_run_fields(result, bool(tests)),
                    "note": "the code already runs" + (" and passes its tests" if tests else "") + "; nothing to fix"}
        error = error_of(result)
    fixed, attempts = code, 0
    for attempts in (1, 2):
        if ctx is not None:
            ctx.check()
        fixed = fix_code(service, fixed, error, args) or fixed
        result = run_code(fixed, tests or None, limits)
        if result.ok:
            break
        error = error_of(result)
    return {"code": fixed, "attempts": attempts, **_run_fields(result, bool(tests)), "note": ""}


def fix_code_step(service: Service, args: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    code = _text(args, "code", ctx, required=True)
    out = fix_loop(service, code, _text(args, "error", ctx), _text(args, "tests", ctx), args, _limits(args), ctx)
    out.pop("note")
    return out


def write_tests_step(service: Service, args: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    return {"tests": write_tests(service, _text(args, "code", ctx, required=True), args)}


def code_assist_step(service: Service, args: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """One of generate | explain | fix | test, with a sandbox run wherever there is code to run."""
    mode = str(args.get("mode") or "generate").strip().lower()
    if mode not in MODES:
        raise InvalidRequestError(f"mode must be one of {', '.join(MODES)}, not {mode!r}", param="mode")
    task, code = _text(args, "task", ctx), _text(args, "code", ctx)
    tests, error = _text(args, "tests", ctx), _text(args, "error", ctx)
    limits = _limits(args)
    if mode != "generate" and not code.strip():
        raise InvalidRequestError(f"mode '{mode}' needs 'code' (the code, or a .py file)", param="code")
    out: dict[str, Any] = {"mode": mode, "code": code, "tests": tests, "explanation": "", "attempts": 0}
    result = None
    if mode == "generate":
        if not task.strip() and not code.strip():
            raise InvalidRequestError("mode 'generate' needs a 'task' (or a 'code' stub to complete)", param="task")
        ctx.progress(0.1, "writing code")
        out["code"] = write_code(service, task, args, code or None)
        ctx.check()
        result = run_code(out["code"], tests or None, limits)
    elif mode == "explain":
        out["explanation"] = explain_code(service, code, args)
    elif mode == "fix":
        ctx.progress(0.1, "fixing")
        fixed = fix_loop(service, code, error, tests, args, limits, ctx)
        out.update(code=fixed["code"], attempts=fixed["attempts"], explanation=fixed["note"])
        out.update({k: fixed[k] for k in ("passed", "run", "stdout", "stderr", "exit_code")})
    else:  # test
        ctx.progress(0.1, "writing tests")
        out["tests"] = write_tests(service, code, args)
        ctx.check()
        result = run_code(code, out["tests"] or None, limits)
    if mode != "fix":
        out.update(_run_fields(result, bool(out["tests"].strip())))
    out["answer"] = _answer(out)
    return out


def _answer(out: dict[str, Any]) -> str:
    parts = []
    if out["mode"] == "explain":
        parts.append(out["explanation"] or "(the model gave no explanation)")
    else:
        if out["mode"] == "fix" and out["explanation"]:
            parts.append(out["explanation"].capitalize() + ".")
        if out["mode"] != "test":
            parts.append(f"```python\n{out['code'].rstrip()}\n```")
        if out["mode"] == "test" or out["tests"].strip():
            parts.append(f"Tests:\n```python\n{out['tests'].rstrip()}\n```")
        if out["run"]:
            parts.append(out["run"])
    return "\n\n".join(parts)


_MODEL = {"model": "text?", "temperature": "number?", "max_tokens": "number?", "seed": "number?"}
_LIMITS = {"timeout": "number?", "memory_mb": "number?"}
_RUN_OUT = {"passed": "any", "run": "text", "stdout": "text", "stderr": "text", "exit_code": "any"}
register_step("write_code", write_code_step, modality="text",
              params={"task": "text?", "code": "text|document?", **_MODEL}, outputs={"code": "text"},
              description="Python code for a task (or a stub completed) from the text model")
register_step("run_code", run_code_step,
              params={"code": "text|document", "tests": "text|document?", **_LIMITS},
              outputs={**_RUN_OUT, "timed_out": "any", "memory_exceeded": "any", "seconds": "number",
                       "reason": "text"},
              description="run Python code (and its tests) in a sandboxed subprocess with time and memory limits")
register_step("explain_code", explain_code_step, modality="text",
              params={"code": "text|document", **_MODEL}, outputs={"text": "text"},
              description="a plain-language explanation of Python code")
register_step("fix_code", fix_code_step, modality="text",
              params={"code": "text|document", "error": "text?", "tests": "text|document?", **_MODEL, **_LIMITS},
              outputs={"code": "text", "attempts": "number", **_RUN_OUT},
              description="fix Python code from its error (found by running it when not given), then run it "
                          "again; one more try if it still fails")
register_step("write_tests", write_tests_step, modality="text",
              params={"code": "text|document", **_MODEL}, outputs={"tests": "text"},
              description="assert-style tests for Python code")
register_step("code_assist", code_assist_step, modality="text",
              params={"mode": "text?", "task": "text?", "code": "text|document?", "tests": "text|document?",
                      "error": "text?", **_MODEL, **_LIMITS},
              outputs={"mode": "text", "answer": "text", "code": "text", "tests": "text", "explanation": "text",
                       "attempts": "number", **_RUN_OUT},
              description="generate, explain, fix or test Python code; code and tests run in the sandbox")

__all__ = ["MODES", "cut_at", "error_of", "explain_code", "extract_code", "fix_code", "fix_loop", "program",
           "report", "run_code", "write_code", "write_tests"]
