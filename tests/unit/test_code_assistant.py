"""The code assistant: code extraction, sandboxed runs of code and tests, the step kinds and the
code-assistant recipe on the embedded model, and `omniforge eval humaneval`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from typer.testing import CliRunner

from omniforge.config import load_settings
from omniforge.errors import InvalidRequestError
from omniforge.evals import humaneval
from omniforge.pipelines import ArtifactStore, PipelineRunner, PipelineStore, Recipe, find_recipe
from omniforge.pipelines import code as code_steps
from omniforge.pipelines.code import cut_at, error_of, extract_code, run_code
from omniforge.service import Service

SQUARE = "def square(x):\n    return x * x\n"
SQUARE_BROKEN = "def square(x):\n    return x + x\n"
SQUARE_TESTS = "assert square(3) == 9\nassert square(-2) == 4\n"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Service:
    svc = Service(load_settings(home=tmp_path_factory.mktemp("code") / "home", threads=1))
    yield svc
    svc.close()


@pytest.fixture
def runner(service: Service, tmp_path: Path) -> PipelineRunner:
    store = PipelineStore(tmp_path / "pipelines" / "jobs.db")
    run = PipelineRunner(service, store, ArtifactStore(tmp_path / "artifacts", store))
    yield run
    run.close()
    store.close()


# -- extraction -----------------------------------------------------------------------------------
def test_extract_code_prefers_a_python_fence() -> None:
    reply = "Here you go:\n```text\nnot code\n```\n```python\ndef f():\n    return 1\n```\nHope it helps!"
    assert extract_code(reply) == "def f():\n    return 1"


def test_extract_code_takes_an_untagged_or_unclosed_fence() -> None:
    assert extract_code("```\nx = 1\nprint(x)\n```") == "x = 1\nprint(x)"
    assert extract_code("Sure.\n```py\ndef g(a):\n    return a * 2\n") == "def g(a):\n    return a * 2"


def test_extract_code_without_fences_drops_prose_around_it() -> None:
    reply = "The answer is below.\ndef add(a, b):\n    return a + b\nThis function adds two numbers."
    assert extract_code(reply) == "def add(a, b):\n    return a + b"
    assert extract_code("I cannot help with that.") == ""


def test_extract_code_cuts_a_half_written_line() -> None:
    code = extract_code("```python\ndef h(n):\n    total = 0\n    for i in range(n):\n        total += i\n    return (to")
    assert code == "def h(n):\n    total = 0\n    for i in range(n):\n        total += i"
    ast.parse(code)


def test_cut_at_the_first_stop() -> None:
    assert cut_at("    return 1\n\ndef other():\n", ["\ndef ", "\n#"]) == "    return 1\n"
    assert cut_at("    return 1\n# note\n", humaneval.STOPS) == "    return 1"
    assert cut_at("no stop here", ["\ndef "]) == "no stop here"


# -- running code and tests in the sandbox --------------------------------------------------------
def test_run_code_passes_a_correct_solution_and_fails_a_broken_one() -> None:
    good = run_code(SQUARE, SQUARE_TESTS)
    assert good.ok, good.stderr
    bad = run_code(SQUARE_BROKEN, SQUARE_TESTS)
    assert not bad.ok and bad.exit_code == 1 and "AssertionError" in bad.stderr
    assert "assert square(3) == 9" in error_of(bad)


def test_test_functions_and_unittest_cases_are_run() -> None:
    tests = ("from solution import square\n\n"
             "def test_positive():\n    assert square(4) == 16\n\n"
             "def test_negative():\n    assert square(-3) == 9\n\n"
             "import unittest\n\nclass SquareTest(unittest.TestCase):\n"
             "    def test_five(self):\n        self.assertEqual(square(5), 25)\n")
    good = run_code(SQUARE, tests)
    assert good.ok, good.stderr
    assert "passed test_positive" in good.stdout and "passed test_negative" in good.stdout
    assert "Ran 1 test" in good.stderr
    bad = run_code(SQUARE_BROKEN, tests)
    assert not bad.ok and "FAILED test_positive" in bad.stderr and "FAILED (failures=1)" in bad.stderr


def test_run_code_step_in_a_recipe(runner: PipelineRunner) -> None:
    recipe = Recipe(name="check-code", inputs={"code": "text", "tests": {"type": "text", "required": False}},
                    steps=[{"name": "run", "uses": "run_code",
                            "with": {"code": "${inputs.code}", "tests": "${inputs.tests}", "timeout": 5}}],
                    outputs={"passed": "${steps.run.passed}", "run": "${steps.run.run}",
                             "stderr": "${steps.run.stderr}"})
    ok = runner.wait(runner.submit(recipe, {"code": SQUARE, "tests": SQUARE_TESTS}), timeout=60)
    assert ok.status == "succeeded", ok.error
    assert ok.outputs["passed"] is True and "passed" in ok.outputs["run"]
    bad = runner.wait(runner.submit(recipe, {"code": SQUARE_BROKEN, "tests": SQUARE_TESTS}), timeout=60)
    assert bad.status == "succeeded", bad.error  # the run failing is the answer, not a failed step
    assert bad.outputs["passed"] is False and "AssertionError" in bad.outputs["stderr"]
    slow = runner.wait(runner.submit(recipe, {"code": "while True:\n    pass\n"}), timeout=60)
    assert slow.outputs["passed"] is False and "timed out" in slow.outputs["run"]


def test_step_limits_and_arguments_are_checked(runner: PipelineRunner) -> None:
    with pytest.raises(InvalidRequestError, match="timeout"):
        code_steps._limits({"timeout": 3600})
    with pytest.raises(InvalidRequestError, match="no argument"):
        Recipe(name="bad", steps=[{"name": "run", "uses": "run_code", "with": {"code": "x", "shell": True}}])


def test_the_code_assistant_recipe_is_built_in_and_checks_its_mode(runner: PipelineRunner) -> None:
    recipe = find_recipe("code-assistant")
    assert set(recipe.inputs) >= {"mode", "task", "code", "error", "tests"}
    assert recipe.inputs["mode"].choices == ["generate", "explain", "fix", "test"]
    with pytest.raises(InvalidRequestError, match="mode"):
        runner.submit("code-assistant", {"mode": "refactor", "task": "x"})


def test_humaneval_checks_in_the_sandbox() -> None:
    problems = humaneval.load_problems()
    assert len(problems) == 164 and problems[0]["task_id"] == "HumanEval/0"
    first = problems[0]
    assert humaneval.check(first, first["canonical_solution"])[0]
    passed, reason, _ = humaneval.check(first, "    return True\n")
    assert not passed and "AssertionError" in reason
    passed, reason, _ = humaneval.check(first, "    while True:\n        pass\n", timeout=1)
    assert not passed and "timed out" in reason


# -- on the embedded model ------------------------------------------------------------------------
@pytest.mark.slow
def test_generate_runs_the_generated_code_and_reports_the_run(runner: PipelineRunner) -> None:
    job = runner.wait(runner.submit("code-assistant", {"task": "Return the square of a number x.",
                                                       "tests": "assert square(3) == 9\n"}), timeout=600)
    assert job.status == "succeeded", job.error
    out = job.outputs
    ast.parse(out["code"])
    assert "def " in out["code"]
    assert isinstance(out["passed"], bool)
    assert out["run"].startswith("Sandbox run of the code and its tests")
    assert out["run"] in out["answer"] and out["code"].strip() in out["answer"]


@pytest.mark.slow
def test_fix_explain_and_test_modes(runner: PipelineRunner) -> None:
    fix = runner.wait(runner.submit("code-assistant", {"mode": "fix", "code": SQUARE_BROKEN,
                                                       "tests": SQUARE_TESTS}), timeout=600)
    assert fix.status == "succeeded", fix.error
    assert "def square" in fix.outputs["code"] and fix.outputs["run"].startswith("Sandbox run of the code and its tests")
    assert isinstance(fix.outputs["passed"], bool)
    explain = runner.wait(runner.submit("code-assistant", {"mode": "explain", "code": SQUARE}), timeout=600)
    assert explain.status == "succeeded", explain.error
    assert explain.outputs["explanation"].strip() and explain.outputs["answer"] == explain.outputs["explanation"]
    tests = runner.wait(runner.submit("code-assistant", {"mode": "test", "code": SQUARE}), timeout=600)
    assert tests.status == "succeeded", tests.error
    assert "square(" in tests.outputs["tests"] and "Sandbox run of the code and its tests" in tests.outputs["run"]


@pytest.mark.slow
def test_eval_humaneval_cli_prints_pass_at_1(tmp_path: Path) -> None:
    from omniforge.cli.evals import app

    report = tmp_path / "humaneval.json"
    result = CliRunner().invoke(app, ["humaneval", "--model", "gemma-3-270m", "--n", "3", "--max-tokens", "96",
                                      "--json", str(report)])
    assert result.exit_code == 0, result.output
    assert "HumanEval pass@1 = " in result.output and "/3 problems" in result.output
    import json

    data = json.loads(report.read_text())
    assert data["problems"] == 3 and len(data["results"]) == 3 and 0.0 <= data["pass_at_1"] <= 1.0
    assert all(r["reason"] for r in data["results"])
