"""Pipelines: the SQLite job store, content-addressed artifacts, recipe checking, and the runner on the
embedded models (voice assistant, captioning, map-reduce summary), including resume after a crash."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageFont

from omniforge.config import load_settings
from omniforge.errors import InvalidRequestError, MissingDependencyError, NotFoundError
from omniforge.pipelines import (
    ArtifactStore,
    PipelineRunner,
    PipelineStore,
    Recipe,
    builtin_recipes,
    find_recipe,
    load_recipe,
    register_step,
)
from omniforge.pipelines.documents import extract_text
from omniforge.pipelines.recipe import resolve
from omniforge.service import Service

ROOT = Path(__file__).resolve().parents[2]


# -- helpers ---------------------------------------------------------------------------------------
CALLS: dict[str, int] = {}


def _counting(name: str) -> Any:
    def fn(service: Any, args: dict[str, Any], ctx: Any) -> dict[str, Any]:
        CALLS[name] = CALLS.get(name, 0) + 1
        return {"value": int(args.get("x", 0)) + 1}
    return fn


register_step("test_first", _counting("test_first"), params={"x": "number?"}, outputs={"value": "number"})
register_step("test_second", _counting("test_second"), params={"x": "number?"}, outputs={"value": "number"})


def _wait_for_cancel(service: Any, args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    for _ in range(400):
        ctx.check()
        time.sleep(0.01)
    return {"value": 0}


register_step("test_waits", _wait_for_cancel, params={}, outputs={"value": "number"})


def _boom(service: Any, args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    raise InvalidRequestError("the boom step always fails")


register_step("test_boom", _boom)


def _two_steps(name: str = "counted") -> Recipe:
    return Recipe(name=name, inputs={"n": {"type": "number", "default": 1}}, steps=[
        {"name": "first", "uses": "test_first", "with": {"x": "${inputs.n}"}},
        {"name": "second", "uses": "test_second", "with": {"x": "${steps.first.value}"}},
    ], outputs={"result": "${steps.second.value}"})


@pytest.fixture
def store(tmp_path: Path) -> PipelineStore:
    s = PipelineStore(tmp_path / "pipelines" / "jobs.db")
    yield s
    s.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Service:
    svc = Service(load_settings(home=tmp_path_factory.mktemp("pipelines") / "home", threads=1))
    yield svc
    svc.close()


def _runner(service: Service, store: PipelineStore, tmp_path: Path) -> PipelineRunner:
    return PipelineRunner(service, store, ArtifactStore(tmp_path / "artifacts", store))


# -- store -----------------------------------------------------------------------------------------
def test_reopening_marks_running_jobs_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    first = PipelineStore(path)
    running = first.create_job("counted", {"n": 1})
    first.update_job(running.id, status="running")
    first.start_step(running.id, "first")
    done = first.create_job("counted", {})
    first.update_job(done.id, status="succeeded", outputs={"result": 3})
    first.close()  # the process that ran it is gone
    second = PipelineStore(path)
    try:
        assert second.interrupted == [running.id]
        assert second.get_job(running.id).status == "interrupted"
        assert second.get_job(done.id).status == "succeeded" and second.get_job(done.id).outputs == {"result": 3}
        assert [e["kind"] for e in second.events(running.id)] == ["interrupted"]
        assert second.steps(running.id)[0]["status"] == "interrupted"
    finally:
        second.close()


def test_a_live_store_keeps_its_running_jobs(tmp_path: Path) -> None:
    first = PipelineStore(tmp_path / "jobs.db")
    job = first.create_job("counted", {})
    first.update_job(job.id, status="running")
    second = PipelineStore(tmp_path / "jobs.db")
    assert second.get_job(job.id).status == "running"
    first.close(), second.close()


def test_events_are_ordered_and_read_after_a_sequence(store: PipelineStore) -> None:
    job = store.create_job("counted", {})
    seqs = [store.add_event(job.id, "tick", {"i": i}) for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    assert [e["data"]["i"] for e in store.events(job.id, after_seq=2)] == [2, 3, 4]
    assert store.events(job.id, after_seq=5) == []


def test_concurrent_writers_from_threads(store: PipelineStore) -> None:
    jobs = [store.create_job("counted", {"k": k}).id for k in range(4)]
    errors: list[BaseException] = []

    def write(job_id: str) -> None:
        try:
            for i in range(50):
                store.add_event(job_id, "tick", {"i": i})
                store.update_job(job_id, progress=i / 50)
                store.finish_step(job_id, f"s{i % 5}", {"i": i})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(j,)) for j in jobs for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for job_id in jobs:
        seqs = [e["seq"] for e in store.events(job_id)]
        assert seqs == list(range(1, 101))
        assert len(store.finished_steps(job_id)) == 5


def test_unknown_job_is_not_found(store: PipelineStore) -> None:
    with pytest.raises(NotFoundError, match="no pipeline run"):
        store.get_job("run_nope")


# -- artifacts -------------------------------------------------------------------------------------
def test_artifacts_are_stored_once_by_content(store: PipelineStore, tmp_path: Path) -> None:
    artifacts = ArtifactStore(tmp_path / "artifacts", store)
    a = artifacts.put(b"same bytes", "text/plain", "a.txt")
    b = artifacts.put(b"same bytes", "text/plain", "b.txt")
    c = artifacts.put(b"other bytes", "text/plain")
    assert a.sha256 == b.sha256 != c.sha256
    assert artifacts.path(a.sha256) == tmp_path / "artifacts" / a.sha256[:2] / a.sha256
    assert artifacts.read(a.ref()) == b"same bytes"
    files = [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()]
    assert len(files) == 2  # no duplicates and no temporary files left behind
    assert a.ref() == {"artifact": a.sha256, "media_type": "text/plain", "name": "a.txt"}
    with pytest.raises(InvalidRequestError, match="not an artifact id"):
        artifacts.path("../../etc/passwd")
    with pytest.raises(NotFoundError):
        artifacts.get("0" * 64)


def test_artifact_writes_are_atomic(store: PipelineStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    artifacts = ArtifactStore(tmp_path / "artifacts", store)

    def fail(*args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        artifacts.put(b"half", "text/plain")
    assert [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()] == []


# -- recipes ---------------------------------------------------------------------------------------
def test_templates_keep_types_or_interpolate() -> None:
    ref = {"artifact": "a" * 64, "media_type": "audio/wav", "name": None}
    context = {"inputs": {"n": 3, "clip": ref}, "steps": {"s": {"text": "hi"}}}
    assert resolve("${inputs.n}", context) == 3
    assert resolve("${inputs.clip}", context) == ref
    assert resolve({"p": "say ${steps.s.text} ${inputs.n} times"}, context) == {"p": "say hi 3 times"}
    assert resolve("${inputs.missing}", context) is None


def test_steps_run_in_dependency_order() -> None:
    recipe = Recipe(name="order", steps=[
        {"name": "c", "uses": "test_second", "with": {"x": "${steps.b.value}"}},
        {"name": "a", "uses": "test_first"},
        {"name": "b", "uses": "test_first", "with": {"x": "${steps.a.value}"}},
    ])
    assert [s.name for s in recipe.order] == ["a", "b", "c"]


@pytest.mark.parametrize(("steps", "inputs", "message"), [
    ([{"name": "a", "uses": "test_first", "with": {"x": "${steps.b.value}"}},
      {"name": "b", "uses": "test_first", "with": {"x": "${steps.a.value}"}}], {}, "cycle: a -> b -> a"),
    ([{"name": "a", "uses": "test_first", "with": {"x": "${steps.ghost.value}"}}], {}, "names no step"),
    ([{"name": "a", "uses": "test_first", "with": {"x": "${inputs.ghost}"}}], {}, "names no input"),
    ([{"name": "a", "uses": "no_such_kind"}], {}, "step 'a': unknown step kind 'no_such_kind'"),
    ([{"name": "a", "uses": "test_first", "with": {"y": 1}}], {}, r"step 'a' \(test_first\) has no argument"),
    ([{"name": "a", "uses": "test_first"}, {"name": "b", "uses": "test_first", "with": {"x": "${steps.a.text}"}}],
     {}, "gives no 'text'; it gives value"),
    ([{"name": "a", "uses": "speak", "with": {"text": "${inputs.clip}"}}], {"clip": {"type": "audio"}},
     "step 'a', argument 'text': expects text but gets audio"),
    ([{"name": "a", "uses": "chat", "with": {"prompt": "hear ${inputs.clip}"}}], {"clip": {"type": "audio"}},
     "cannot be put inside text"),
    ([{"name": "a", "uses": "chat", "with": {}}], {}, r"step 'a' \(chat\) needs argument\(s\) prompt"),
    ([{"name": "a", "uses": "test_first"}, {"name": "a", "uses": "test_first"}], {}, "two steps are named 'a'"),
])
def test_bad_recipes_are_refused_with_the_step_named(steps: list[Any], inputs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        Recipe(name="bad", steps=steps, inputs=inputs)


def test_yaml_recipes_builtin_and_user(tmp_path: Path) -> None:
    assert {"voice-assistant", "caption-image", "summarize"} <= set(builtin_recipes())
    voice = find_recipe("voice-assistant")
    assert [s.name for s in voice.order] == ["hear", "reply", "say"]
    assert set(voice.outputs) == {"transcript", "reply", "audio"}
    home = tmp_path / "home"
    (home / "recipes").mkdir(parents=True)
    (home / "recipes" / "echo.yaml").write_text(
        "name: echo\ninputs:\n  n: {type: number, default: 2}\n"
        "steps:\n  - {name: one, uses: test_first, with: {x: '${inputs.n}'}}\noutputs:\n  v: ${steps.one.value}\n"
    )
    assert find_recipe("echo", home).inputs["n"].default == 2
    assert find_recipe(home / "recipes" / "echo.yaml").name == "echo"
    (tmp_path / "broken.yaml").write_text("name: broken\nsteps:\n  - {name: x, uses: test_first, wiht: {}}\n")
    with pytest.raises(InvalidRequestError, match=r"steps\[0\] \(x\) has unknown key\(s\) wiht"):
        load_recipe(tmp_path / "broken.yaml")
    with pytest.raises(NotFoundError, match="no recipe named 'nope'; known: .*voice-assistant"):
        find_recipe("nope", home)


# -- documents -------------------------------------------------------------------------------------
def _docx(paragraphs: list[str]) -> bytes:
    ns = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    body = "".join(f"<w:p><w:r><w:t>{p}</w:t></w:r></w:p>" for p in paragraphs)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("word/document.xml", f'<w:document xmlns:w="{ns}"><w:body>{body}</w:body></w:document>')
    return buf.getvalue()


def test_text_comes_out_of_documents() -> None:
    html = b"<html><head><title>x</title><style>p{}</style></head><body><h1>Title</h1><p>One &amp; two</p></body></html>"
    assert extract_text(html, "text/html") == ("Title\n\nOne & two", "html")
    assert extract_text(b"# Head\n\nbody", "text/markdown")[0] == "# Head\n\nbody"
    assert extract_text(_docx(["First para", "Second"]), "application/octet-stream", "r.docx") == (
        "First para\nSecond", "docx")
    try:
        import pypdf  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match="pip install pypdf"):
            extract_text(b"%PDF-1.4", "application/pdf")
    with pytest.raises(InvalidRequestError, match="cannot read text"):
        extract_text(b"\x00", "image/png", "x.png")


# -- runner without models -------------------------------------------------------------------------
def test_a_run_records_steps_events_and_outputs(service: Service, store: PipelineStore, tmp_path: Path) -> None:
    runner = _runner(service, store, tmp_path)
    try:
        job = runner.wait(runner.submit(_two_steps(), {"n": "5"}), timeout=30)
    finally:
        runner.close()
    assert job.status == "succeeded" and job.outputs == {"result": 7} and job.progress == 1.0
    kinds = [e["kind"] for e in store.events(job.id)]
    assert kinds == ["queued", "started", "step_started", "step_finished", "step_started", "step_finished",
                     "succeeded"]


def test_inputs_are_checked_before_anything_runs(service: Service, store: PipelineStore, tmp_path: Path) -> None:
    runner = _runner(service, store, tmp_path)
    try:
        with pytest.raises(InvalidRequestError, match="has no input"):
            runner.submit(_two_steps(), {"m": 1})
        with pytest.raises(InvalidRequestError, match="must be a number"):
            runner.submit(_two_steps(), {"n": "many"})
        with pytest.raises(InvalidRequestError, match="needs input 'audio'"):
            runner.submit("voice-assistant", {})
        with pytest.raises(InvalidRequestError, match="no file at"):
            runner.submit("voice-assistant", {"audio": str(tmp_path / "missing.wav")})
        with pytest.raises(InvalidRequestError, match="must be one of short, medium, long"):
            runner.submit("summarize", {"document": "some text", "length": "huge"})
    finally:
        runner.close()
    assert store.list_jobs() == []


def test_a_failing_step_fails_the_run_with_its_name(service: Service, store: PipelineStore, tmp_path: Path) -> None:
    recipe = Recipe(name="fails", steps=[{"name": "first", "uses": "test_first"},
                                         {"name": "bang", "uses": "test_boom", "with": {"after": "${steps.first.value}"}}])
    runner = _runner(service, store, tmp_path)
    try:
        job = runner.wait(runner.submit(recipe), timeout=30)
    finally:
        runner.close()
    assert job.status == "failed"
    assert job.error == "step 'bang' (test_boom) failed: the boom step always fails"
    assert store.finished_steps(job.id) == {"first": {"value": 1}}


def test_a_missing_modality_is_named(tmp_path: Path, store: PipelineStore) -> None:
    svc = Service(load_settings(home=tmp_path / "home2", threads=1, default_speech_model="no-such-voice"))
    runner = _runner(svc, store, tmp_path)
    try:
        with pytest.raises(NotFoundError, match=r"step 'say' \(speak\) needs a speech model"):
            runner.submit("voice-assistant", {"audio": b"RIFF0000WAVE"})
    finally:
        runner.close()
        svc.close()


def test_cancel_stops_a_running_step(service: Service, store: PipelineStore, tmp_path: Path) -> None:
    recipe = Recipe(name="waits", steps=[{"name": "wait", "uses": "test_waits"}])
    runner = _runner(service, store, tmp_path)
    try:
        job_id = runner.submit(recipe)
        deadline = time.monotonic() + 10
        while store.get_job(job_id).status != "running" and time.monotonic() < deadline:
            time.sleep(0.01)
        runner.cancel(job_id)
        job = runner.wait(job_id, timeout=10)
    finally:
        runner.close()
    assert job.status == "cancelled"
    assert store.events(job_id)[-1]["kind"] == "cancelled"


def test_resume_after_a_crash_skips_finished_steps(service: Service, tmp_path: Path) -> None:
    CALLS.clear()
    path = tmp_path / "jobs.db"
    crashed = PipelineStore(path)  # what a process left behind: step 1 finished, step 2 under way
    job = crashed.create_job("counted", {"n": 10})
    crashed.update_job(job.id, status="running")
    crashed.start_step(job.id, "first")
    crashed.finish_step(job.id, "first", {"value": 11})
    crashed.start_step(job.id, "second")
    crashed.close()

    store = PipelineStore(path)
    runner = _runner(service, store, tmp_path)
    runner.register(_two_steps())
    gone = store.create_job("deleted-recipe", {})
    store.close()
    store = PipelineStore(path)  # `gone` is now interrupted too
    runner = _runner(service, store, tmp_path)
    runner.register(_two_steps())
    try:
        assert runner.resume_interrupted() == [job.id]
        finished = runner.wait(job.id, timeout=30)
    finally:
        runner.close()
        store.close()
    assert finished.status == "succeeded" and finished.outputs == {"result": 12}
    assert CALLS == {"test_second": 1}  # step 1 was not run again
    store = PipelineStore(path)
    failed = store.get_job(gone.id)
    store.close()
    assert failed.status == "failed" and "recipe 'deleted-recipe' no longer exists" in failed.error


CRASH_SCRIPT = """
import sys, time
from pathlib import Path
from omniforge.config import load_settings
from omniforge.pipelines import ArtifactStore, PipelineRunner, PipelineStore, register_step
from omniforge.service import Service

root = Path(sys.argv[1])
register_step("test_first", lambda s, a, c: {"value": int(a.get("x", 0)) + 1},
              params={"x": "number?"}, outputs={"value": "number"})
register_step("test_second", lambda s, a, c: time.sleep(600) or {"value": 0},
              params={"x": "number?"}, outputs={"value": "number"})
store = PipelineStore(root / "jobs.db")
runner = PipelineRunner(Service(load_settings(home=root / "home", threads=1)), store,
                        ArtifactStore(root / "artifacts", store), home=root / "home")
print(runner.submit(str(root / "counted.yaml"), {"n": 1}), flush=True)
time.sleep(600)
"""
COUNTED_YAML = """name: counted
inputs: {n: {type: number, default: 1}}
steps:
  - {name: first, uses: test_first, with: {x: '${inputs.n}'}}
  - {name: second, uses: test_second, with: {x: '${steps.first.value}'}}
outputs: {result: '${steps.second.value}'}
"""


def test_a_killed_process_leaves_a_resumable_run(service: Service, tmp_path: Path) -> None:
    CALLS.clear()
    (tmp_path / "counted.yaml").write_text(COUNTED_YAML)
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    proc = subprocess.Popen([sys.executable, "-c", CRASH_SCRIPT, str(tmp_path)], stdout=subprocess.PIPE, env=env)
    try:
        job_id = proc.stdout.readline().decode().strip()  # type: ignore[union-attr]
        assert job_id.startswith("run_")
        watcher = PipelineStore(tmp_path / "jobs.db")
        deadline = time.monotonic() + 60
        while "first" not in watcher.finished_steps(job_id) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert watcher.finished_steps(job_id) == {"first": {"value": 2}}
        watcher.close()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    store = PipelineStore(tmp_path / "jobs.db")
    runner = _runner(service, store, tmp_path)
    try:
        assert store.get_job(job_id).status == "interrupted"
        assert runner.resume_interrupted() == [job_id]
        job = runner.wait(job_id, timeout=30)
    finally:
        runner.close()
        store.close()
    assert job.status == "succeeded" and job.outputs == {"result": 3}
    assert CALLS == {"test_second": 1}


# -- built-in recipes on the embedded models -------------------------------------------------------
def _wav(service: Service, text: str) -> bytes:
    from omniforge.audio.codec import finish_wav

    _, _, stream = service.speak(text, fmt="wav")
    return finish_wav(b"".join(stream))


@pytest.mark.slow
def test_voice_assistant(service: Service, store: PipelineStore, tmp_path: Path) -> None:
    runner = _runner(service, store, tmp_path)
    try:
        job = runner.wait(runner.submit("voice-assistant", {"audio": _wav(service, "What is the capital of France?")}),
                          timeout=300)
        audio = runner.artifacts.read(job.outputs["audio"]) if job.outputs else b""
    finally:
        runner.close()
    assert job.status == "succeeded", job.error
    assert "capital" in job.outputs["transcript"].lower() and "france" in job.outputs["transcript"].lower()
    assert job.outputs["reply"].strip()
    assert audio[:4] == b"RIFF" and audio[8:12] == b"WAVE" and len(audio) > 10_000
    assert job.outputs["audio"]["media_type"] == "audio/wav"
    assert {a["sha256"] for a in store.job_artifacts(job.id)} >= {job.outputs["audio"]["artifact"]}


@pytest.mark.slow
def test_caption_image(service: Service, store: PipelineStore, tmp_path: Path) -> None:
    img = Image.new("RGB", (360, 120), (255, 255, 255))
    ImageDraw.Draw(img).text((20, 30), "OPEN", fill=(0, 0, 0), font=ImageFont.load_default(size=48))
    path = tmp_path / "sign.png"
    img.save(path)
    runner = _runner(service, store, tmp_path)
    try:
        job = runner.wait(runner.submit("caption-image", {"image": path}), timeout=300)
    finally:
        runner.close()
    assert job.status == "succeeded", job.error
    assert "open" in job.outputs["caption"].lower()
    assert job.outputs["alt_text"].strip()


TOPICS = (
    ("lighthouse", ("The lighthouse on the northern cape was built of grey granite and stood forty metres tall. "
     "Its keeper climbed the spiral stairs every evening to light the lamp, and ships far out at sea used the "
     "beam to find the harbour. In winter the storms were so strong that spray reached the lantern room.")),
    ("harbour", ("The harbour of Port Ellis sheltered about sixty fishing boats. Merchants sold cod, herring and "
     "crab on the quay every morning, and the harbour master kept a ledger of every ship that came and went. "
     "A new stone pier was finished in the spring, so larger cargo ships could unload timber and coal.")),
    ("school", ("The village school had two classrooms and a small library. Children learned reading, arithmetic "
     "and the names of the stars, and the teacher took them to the lighthouse once a year to watch the lamp. "
     "Parents raised money at a summer fair to buy new books and a globe.")),
)


def _long_document() -> str:
    paragraphs = []
    for round_ in range(10):
        for name, text in TOPICS:
            paragraphs.append(f"Part {round_ + 1} about the {name}. {text}")
    return "\n\n".join(paragraphs)


@pytest.mark.slow
def test_summarize_a_long_document_by_map_reduce(service: Service, store: PipelineStore, tmp_path: Path) -> None:
    text = _long_document()
    assert len(text.split()) > 1500  # about three pages
    path = tmp_path / "town.md"
    path.write_text(text)
    runner = _runner(service, store, tmp_path)
    try:
        job = runner.wait(runner.submit("summarize", {"document": path, "length": "short"}), timeout=600)
    finally:
        runner.close()
    assert job.status == "succeeded", job.error
    assert job.outputs["format"] == "markdown"
    assert job.outputs["chunks"] >= 2  # it did not fit one prompt: map-reduce
    assert job.outputs["summary"].strip()
    progress = [e for e in store.events(job.id) if e["kind"] == "step_progress"]
    assert progress and all(0 <= e["data"]["progress"] <= 1 for e in progress)
