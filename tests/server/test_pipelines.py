"""Pipelines over HTTP with real server processes: recipes, runs, server-sent events, artifacts,
cancel, and a kill -9 in the middle of a multi-step run that a restarted server finishes."""

from __future__ import annotations

import base64
import json
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.recipe_cases import cases as recipe_cases

from .helpers import REQUEST_TIMEOUT_S, ServerProcess, assert_alive, assert_openai_error, start_server

# A user recipe: a quick first step (speech), then a slow one (a map-reduce summary).
NARRATED_SUMMARY = """
name: narrated-summary
description: speak a title, then summarize a long text
inputs:
  title: {type: text}
  text: {type: text}
steps:
  - name: voice
    uses: speak
    with: {text: "${inputs.title}"}
  - name: summary
    uses: summarize
    with: {text: "${inputs.text}", length: short}
outputs:
  audio: ${steps.voice.audio}
  summary: ${steps.summary.text}
"""
LONG_TEXT = " ".join(
    f"Section {i}. The city council met on day {i} to discuss the new library, the repair of the old "
    f"bridge, and the budget for the summer festival; members agreed to publish the minutes online."
    for i in range(1, 120)
)


def _wav_data_url(http: httpx.Client) -> str:
    speech = http.post("/v1/audio/speech", json={"input": "What is the capital of France?", "voice": "alloy",
                                                 "response_format": "wav"})
    return "data:audio/wav;base64," + base64.b64encode(speech.content).decode()


def _wait(http: httpx.Client, run_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = http.get(f"/v1/pipelines/runs/{run_id}").json()
        if run["status"] in ("succeeded", "failed", "cancelled"):
            return run
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} did not end in {timeout} s")


def test_recipes_are_listed(http: httpx.Client) -> None:
    names = {r["name"] for r in http.get("/v1/recipes").json()["data"]}
    assert {"voice-assistant", "caption-image", "summarize"} <= names


def test_voice_assistant_run_with_events_and_artifact(http: httpx.Client) -> None:
    r = http.post("/v1/pipelines/voice-assistant/runs", json={"inputs": {"audio": _wav_data_url(http)}})
    assert r.status_code == 200, r.text
    run_id = r.json()["id"]
    kinds = []
    with http.stream("GET", f"/v1/pipelines/runs/{run_id}/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                kinds.append(json.loads(line[6:])["kind"])
    assert kinds[-1] == "succeeded" and "step_finished" in kinds
    run = http.get(f"/v1/pipelines/runs/{run_id}").json()
    assert "capital" in run["outputs"]["transcript"].lower()
    audio = http.get(f"/v1/artifacts/{run['outputs']['audio']['artifact']}")
    assert audio.status_code == 200 and audio.content[:4] == b"RIFF"


def test_pipeline_errors(http: httpx.Client) -> None:
    r = http.post("/v1/pipelines/no-such-recipe/runs", json={"inputs": {}})
    assert r.status_code in (400, 404)
    r = http.post("/v1/pipelines/voice-assistant/runs", json={"inputs": {}})
    assert_openai_error(r, 400, "invalid_request_error")
    r = http.post("/v1/pipelines/voice-assistant/runs", json={"inputs": {"audio": "data:audio/wav;base64,@@"}})
    assert_openai_error(r, 400, "invalid_request_error")
    assert http.get("/v1/pipelines/runs/run_nope").status_code == 404
    assert http.get("/v1/artifacts/not-a-sha").status_code == 400
    # The server never reads its own files for a client: not as a recipe, not as an input.
    assert http.post("/v1/pipelines/pyproject.toml/runs", json={"inputs": {}}).status_code == 404
    r = http.post("/v1/pipelines/voice-assistant/runs", json={"inputs": {"audio": "/etc/hostname"}})
    assert_openai_error(r, 400, "invalid_request_error")
    assert "data: URL" in r.json()["error"]["message"] and r.json()["error"]["param"] == "inputs.audio"
    r = http.post("/v1/pipelines/voice-assistant/runs", json={"inputs": {"audio": "http://127.0.0.1:9/a.wav"}})
    assert_openai_error(r, 400, "invalid_request_error")
    assert r.json()["error"]["code"] == "remote_urls_disabled"
    assert_alive(http)


@pytest.mark.slow
def test_killed_server_resumes_the_run_without_redoing_finished_steps(tmp_path: Path) -> None:
    root = tmp_path / "srv"
    home = root / "home"
    (home / "recipes").mkdir(parents=True)
    (home / "recipes" / "narrated-summary.yaml").write_text(NARRATED_SUMMARY)
    server: ServerProcess = start_server(root)
    try:
        with httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT_S) as http:
            r = http.post("/v1/pipelines/narrated-summary/runs",
                          json={"inputs": {"title": "The council minutes.", "text": LONG_TEXT}})
            assert r.status_code == 200, r.text
            run_id = r.json()["id"]
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # wait until the first step is done and the second runs
                steps = {s["name"]: s["status"] for s in http.get(f"/v1/pipelines/runs/{run_id}").json()["steps"]}
                if steps.get("voice") == "succeeded" and steps.get("summary") == "running":
                    break
                time.sleep(0.1)
            else:
                raise AssertionError(f"the run never reached its second step: {steps}")
            audio_sha = http.get(f"/v1/pipelines/runs/{run_id}").json()["steps"][0]["output"]["audio"]["artifact"]
        server.proc.send_signal(signal.SIGKILL)  # no clean shutdown
        server.proc.wait(timeout=10)
        server = start_server(root)
        with httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT_S) as http:
            run = _wait(http, run_id, timeout=600)
            assert run["status"] == "succeeded", run["error"]
            assert run["outputs"]["summary"]
            assert run["outputs"]["audio"]["artifact"] == audio_sha  # the finished step was kept, not redone
            kinds = [e["kind"] for e in _events(http, run_id)]
            assert "step_skipped" in kinds
            assert http.get(f"/v1/artifacts/{audio_sha}").content[:4] == b"RIFF"
    finally:
        server.stop()


def _events(http: httpx.Client, run_id: str) -> list[dict]:
    events = []
    with http.stream("GET", f"/v1/pipelines/runs/{run_id}/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[6:]))
    return events


@pytest.mark.slow
def test_code_assistant_runs_the_generated_code_in_the_sandbox(http: httpx.Client) -> None:
    r = http.post("/v1/pipelines/code-assistant/runs", json={"inputs": {
        "task": "Return the square of a number x.", "tests": "assert square(3) == 9\nassert square(-2) == 4\n"}})
    assert r.status_code == 200, r.text
    run = _wait(http, r.json()["id"])
    assert run["status"] == "succeeded", run["error"]
    outputs = run["outputs"]
    assert "def square" in outputs["code"]
    assert "sandbox" in outputs["answer"].lower()  # the run's result is part of the answer
    assert isinstance(outputs["passed"], bool)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(recipe_cases(Path("/nonexistent"), b"")))
def test_builtin_recipe_runs_from_the_api(http: httpx.Client, tmp_path: Path, name: str) -> None:
    wav = http.post("/v1/audio/speech", json={"input": "What is the capital of France?", "voice": "alloy",
                                              "response_format": "wav"}).content
    inputs, check = recipe_cases(tmp_path, wav)[name]
    for key, value in inputs.items():  # binary inputs travel as data URLs
        if isinstance(value, bytes):
            media = "audio/wav" if value[:4] == b"RIFF" else "image/png"
            inputs[key] = f"data:{media};base64," + base64.b64encode(value).decode()
    r = http.post(f"/v1/pipelines/{name}/runs", json={"inputs": inputs})
    assert r.status_code == 200, r.text
    run = _wait(http, r.json()["id"], timeout=600)
    assert run["status"] == "succeeded", run["error"]

    def read(ref: dict) -> bytes:
        got = http.get(f"/v1/artifacts/{ref['artifact']}")
        assert got.status_code == 200, got.text
        return got.content

    check(run["outputs"], read)
