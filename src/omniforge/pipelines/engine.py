"""The pipeline runner: validates a run's inputs, queues it, and executes its steps in order on worker threads.

Every step's output is recorded in the store as it finishes, so a run cut off by a crash resumes
from its last finished step (`resume_interrupted`); cancel is honoured between steps and inside
them through the step context's check. A run fails with the failing step named in its error.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequestError, OmniforgeError
from .artifacts import ArtifactStore, is_ref
from .recipe import Recipe, find_recipe, resolve
from .steps import BINARY, JobCancelled, StepContext, check_available, get_step
from .store import TERMINAL, Job, PipelineStore, new_job_id

if TYPE_CHECKING:
    from ..service import Service

log = logging.getLogger("omniforge.pipelines")

_PROGRESS_EVERY_S = 0.5


class PipelineRunner:
    def __init__(self, service: Service, store: PipelineStore, artifacts: ArtifactStore, workers: int = 1,
                 home: Path | None = None) -> None:
        if not 1 <= workers <= 4:
            raise InvalidRequestError("workers must be between 1 and 4", param="workers")
        self.service, self.store, self.artifacts = service, store, artifacts
        self.home = home if home is not None else service.settings.home
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="omniforge-pipeline")
        self._lock = threading.Lock()
        self._recipes: dict[str, Recipe] = {}  # recipes built in Python, by name
        self._futures: dict[str, Future[Job]] = {}
        self._closing = False

    # -- recipes -----------------------------------------------------------------------------
    def register(self, recipe: Recipe) -> None:
        """Make a recipe built in code known by name (to submit and resume it)."""
        with self._lock:
            self._recipes[recipe.name] = recipe

    def recipe(self, name_or_path: str | Recipe) -> Recipe:
        if isinstance(name_or_path, Recipe):
            return name_or_path
        with self._lock:
            known = self._recipes.get(str(name_or_path))
        return known or find_recipe(name_or_path, self.home)

    # -- submitting --------------------------------------------------------------------------
    def submit(self, recipe: str | Recipe, inputs: dict[str, Any] | None = None) -> str:
        """Validate `inputs` against the recipe, store binary ones as artifacts, queue the run; its id."""
        recipe = self.recipe(recipe)
        if recipe.source is None:
            self.register(recipe)
        values = self._check_inputs(recipe, dict(inputs or {}))
        for step in recipe.order:
            check_available(self.service, get_step(step.uses), step.name, step.with_.get("model"))
        job_id = new_job_id()
        stored = {k: self._store_input(recipe.inputs[k].type, k, v, job_id) for k, v in values.items()}
        job = self.store.create_job(recipe.name, stored, str(recipe.source) if recipe.source else None, job_id)
        self.store.add_event(job.id, "queued", {"recipe": recipe.name})
        self._queue(job.id)
        return job.id

    def _check_inputs(self, recipe: Recipe, inputs: dict[str, Any]) -> dict[str, Any]:
        unknown = set(inputs) - set(recipe.inputs)
        if unknown:
            raise InvalidRequestError(f"recipe '{recipe.name}' has no input(s) {', '.join(sorted(unknown))}; "
                                      f"it takes {', '.join(recipe.inputs) or 'none'}",
                                      param=f"inputs.{min(unknown)}")
        out = {}
        for name, spec in recipe.inputs.items():
            value = inputs.get(name, spec.default)
            if value is None or (value == "" and spec.type in BINARY):
                if spec.required:
                    raise InvalidRequestError(f"recipe '{recipe.name}' needs input '{name}' ({spec.type})",
                                              param=f"inputs.{name}")
                continue
            if spec.type == "number":
                try:
                    value = _number(value)
                except (TypeError, ValueError):
                    raise InvalidRequestError(f"input '{name}' must be a number, not {value!r}",
                                              param=f"inputs.{name}") from None
            elif spec.type == "text" and not isinstance(value, str):
                raise InvalidRequestError(f"input '{name}' must be text", param=f"inputs.{name}")
            if spec.choices and value not in spec.choices:
                raise InvalidRequestError(f"input '{name}' must be one of {', '.join(map(str, spec.choices))}",
                                          param=f"inputs.{name}")
            out[name] = value
        return out

    def _store_input(self, typ: str, name: str, value: Any, job_id: str) -> Any:
        """Binary inputs (bytes, a file path, an artifact reference) become artifact references."""
        if typ not in BINARY:
            return value
        if is_ref(value):
            return self.artifacts.get(value).ref()
        if isinstance(value, bytes | bytearray):
            return self.artifacts.put(bytes(value), None, None, job_id).ref()
        if isinstance(value, Path) or isinstance(value, str) and Path(value).expanduser().is_file():
            return self.artifacts.put_file(Path(value), job_id=job_id).ref()
        if typ == "document" and isinstance(value, str):
            if "\n" not in value and len(value) < 260 and Path(value).suffix.lower() in (
                    ".pdf", ".docx", ".txt", ".md", ".html", ".htm"):
                raise InvalidRequestError(f"input '{name}': no file at {value}", param=f"inputs.{name}")
            return self.artifacts.put(value.encode(), "text/plain", None, job_id).ref()
        raise InvalidRequestError(f"input '{name}' ({typ}) must be bytes, a file path or an artifact; "
                                  f"no file at {value!r}", param=f"inputs.{name}")

    def _queue(self, job_id: str) -> None:
        with self._lock:
            running = self._futures.get(job_id)
            if running is not None and not running.done():
                return
            self._futures[job_id] = self._pool.submit(self._run_logged, job_id)

    def _run_logged(self, job_id: str) -> Job:
        try:
            return self.run(job_id)
        except Exception:
            log.exception("pipeline run %s crashed", job_id)
            raise

    # -- running -----------------------------------------------------------------------------
    def run(self, job_id: str) -> Job:
        """Run (or resume) `job_id` here and now; steps already finished in the store are not re-run."""
        job = self.store.get_job(job_id)
        if job.finished:
            return job
        if self.store.cancel_requested(job_id):
            return self._end(job_id, "cancelled", None, {"reason": "cancelled before it started"})
        try:
            recipe = self.recipe(job.recipe_source or job.recipe)
        except OmniforgeError as exc:
            return self._end(job_id, "failed", f"recipe '{job.recipe}' no longer exists: {exc.message}", {})
        done = self.store.finished_steps(job_id)
        self.store.update_job(job_id, status="running", error=None)
        self.store.add_event(job_id, "started", {"resumed_steps": sorted(done)})
        context: dict[str, Any] = {"inputs": job.inputs, "steps": done}
        total = len(recipe.order)
        for index, step in enumerate(recipe.order):
            if step.name in done:
                self.store.add_event(job_id, "step_skipped", {"step": step.name, "reason": "finished before"})
                continue
            try:
                output = self._step(job_id, step, context, index, total)
            except JobCancelled:
                if self._closing and not self.store.cancel_requested(job_id):  # stopped, not cancelled
                    self.store.fail_step(job_id, step.name, "the runner closed", status="interrupted")
                    return self._end(job_id, "interrupted", None, {"step": step.name, "reason": "the runner closed"})
                self.store.fail_step(job_id, step.name, "cancelled", status="cancelled")
                return self._end(job_id, "cancelled", None, {"step": step.name})
            except Exception as exc:  # the run fails with its reason; the worker lives on
                reason = exc.message if isinstance(exc, OmniforgeError) else f"{type(exc).__name__}: {exc}"
                log.warning("pipeline %s step %s failed: %s", job_id, step.name, reason,
                            exc_info=not isinstance(exc, OmniforgeError))
                self.store.fail_step(job_id, step.name, reason)
                self.store.add_event(job_id, "step_failed", {"step": step.name, "error": reason})
                return self._end(job_id, "failed", f"step '{step.name}' ({step.uses}) failed: {reason}",
                                 {"step": step.name})
            context["steps"][step.name] = output
        try:
            outputs = resolve(recipe.outputs, context)
        except OmniforgeError as exc:
            return self._end(job_id, "failed", f"outputs: {exc.message}", {})
        self.store.update_job(job_id, outputs=outputs)
        return self._end(job_id, "succeeded", None, {"outputs": outputs})

    def _stopping(self, job_id: str) -> bool:
        return self._closing or self.store.cancel_requested(job_id)

    def _step(self, job_id: str, step: Any, context: dict[str, Any], index: int, total: int) -> dict[str, Any]:
        if self._stopping(job_id):
            raise JobCancelled(job_id)
        kind = get_step(step.uses)
        args = {k: v for k, v in resolve(step.with_, context).items() if v is not None}
        check_available(self.service, kind, step.name, args.get("model"))
        self.store.start_step(job_id, step.name)
        self.store.update_job(job_id, progress=index / total)
        self.store.add_event(job_id, "step_started", {"step": step.name, "uses": step.uses,
                                                      "index": index, "total": total})
        last = [0.0]

        def progress(fraction: float, message: str | None = None) -> None:
            now = time.monotonic()
            if now - last[0] < _PROGRESS_EVERY_S:
                return
            last[0] = now
            overall = (index + max(0.0, min(1.0, float(fraction)))) / total
            self.store.update_job(job_id, progress=overall)
            self.store.add_event(job_id, "step_progress", {"step": step.name, "fraction": fraction,
                                                           "progress": overall, "message": message})

        ctx = StepContext(self.artifacts, job_id, step.name, progress, lambda: self._stopping(job_id))
        started = time.monotonic()
        output = kind.fn(self.service, args, ctx)
        if not isinstance(output, dict):
            raise InvalidRequestError(f"step kind '{step.uses}' returned {type(output).__name__}, not a dict")
        _json(output)  # refuse what cannot be stored before it is marked finished
        self.store.finish_step(job_id, step.name, output)
        self.store.update_job(job_id, progress=(index + 1) / total)
        self.store.add_event(job_id, "step_finished", {"step": step.name, "output": output,
                                                       "seconds": round(time.monotonic() - started, 3)})
        return output

    def _end(self, job_id: str, status: str, error: str | None, data: dict[str, Any]) -> Job:
        fields: dict[str, Any] = {"status": status, "error": error}
        if status == "succeeded":
            fields["progress"] = 1.0
        self.store.update_job(job_id, **fields)
        self.store.add_event(job_id, status, {**data, **({"error": error} if error else {})})
        log.info("pipeline run %s %s%s", job_id, status, f": {error}" if error else "")
        return self.store.get_job(job_id)

    # -- control -----------------------------------------------------------------------------
    def resume_interrupted(self) -> list[str]:
        """Queue every interrupted run again (it resumes after its last finished step); a run whose
        recipe is gone is failed with the reason. Returns the ids queued."""
        queued = []
        for job in self.store.list_jobs(status="interrupted", limit=10_000):
            try:
                self.recipe(job.recipe_source or job.recipe)
            except OmniforgeError as exc:
                self._end(job.id, "failed", f"recipe '{job.recipe}' no longer exists: {exc.message}", {})
                continue
            self.store.update_job(job.id, status="queued")
            self.store.add_event(job.id, "resumed", {"finished_steps": sorted(self.store.finished_steps(job.id))})
            self._queue(job.id)
            queued.append(job.id)
        return queued

    def cancel(self, job_id: str) -> Job:
        """Ask a run to stop: a queued one is cancelled now, a running one at its next check."""
        job = self.store.get_job(job_id)
        if job.status in TERMINAL:
            return job
        self.store.request_cancel(job_id)
        if job.status in ("queued", "interrupted"):
            with self._lock:
                future = self._futures.get(job_id)
            if future is None or future.cancel():
                return self._end(job_id, "cancelled", None, {"reason": "cancelled before it started"})
        return self.store.get_job(job_id)

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the run ends (or `timeout` seconds pass); its job."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.store.get_job(job_id)
            if job.finished or (deadline is not None and time.monotonic() >= deadline):
                return job
            time.sleep(0.05)

    def close(self, wait: bool = True) -> None:
        """Stop taking work; a run in progress stops at its next check and is "interrupted" (resumable),
        queued ones stay queued for the next runner on this store."""
        self._closing = True
        self._pool.shutdown(wait=wait, cancel_futures=True)


def _number(value: Any) -> int | float:
    if isinstance(value, bool):
        raise TypeError("a bool is not a number")
    if isinstance(value, int | float):
        return value
    number = float(value)
    return int(number) if number.is_integer() and "." not in str(value) else number


def _json(value: Any) -> str:
    import json

    try:
        return json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(f"step output is not JSON-able: {exc}; store bytes as artifacts") from None


__all__ = ["PipelineRunner"]
