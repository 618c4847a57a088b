"""The in-process model runtime: lazy load, one shared instance per model, bounded queues, LRU unload.

Every request leases its model: the lease waits in the model's bounded queue for one of the
instance's slots (`ModelInstance.concurrency`), loads the model on first use, and on release marks
it recently used. Overload is refused at once (503 with Retry-After) instead of growing memory.
Loading past `memory_budget_mb` unloads the least recently used idle models first.

A Ray Serve runtime would implement the same `lease` / `loaded` / `unload` surface.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..backends import load_model
from ..backends.base import ModelInstance
from ..catalog.spec import ModelSpec
from ..config import Settings
from ..errors import ModelLoadError, OmniforgeError, OverloadedError

log = logging.getLogger("omniforge.runtime")

LoadListener = Callable[[str, str], None]  # (event "loading"|"loaded"|"unloaded", model id)


def _rss_bytes() -> int:
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except Exception:  # psutil missing or restricted: memory logging only
        return 0


@dataclass
class _Slot:
    spec: ModelSpec
    semaphore: threading.Semaphore | None = None
    instance: ModelInstance | None = None
    load_lock: threading.Lock = field(default_factory=threading.Lock)
    waiting: int = 0
    active: int = 0
    last_used: float = 0.0
    memory: int = 0
    load_seconds: float = 0.0


@dataclass(frozen=True)
class LoadedModel:
    id: str
    modality: str
    memory_bytes: int
    load_seconds: float
    active: int
    waiting: int
    idle_seconds: float


class ModelManager:
    def __init__(self, settings: Settings, loader: Callable[[ModelSpec, Settings], ModelInstance] = load_model):
        self.settings = settings
        self._loader = loader
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}
        self.listeners: list[LoadListener] = []

    # -- leasing -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def lease(self, spec: ModelSpec) -> Iterator[ModelInstance]:
        """Hold one slot of `spec`'s instance for the duration of a request."""
        spec.require_accepted(self.settings.accept_licenses)
        slot = self._slot(spec)
        with self._lock:
            if slot.waiting >= self.settings.max_queue:
                raise OverloadedError(
                    f"model '{spec.id}' has {slot.waiting} requests waiting (max_queue="
                    f"{self.settings.max_queue}); retry later",
                    retry_after=self._retry_after(slot),
                )
            slot.waiting += 1
        # The semaphore is created on first load, when the backend's concurrency is known.
        acquired = False
        try:
            instance = self._ensure_loaded(slot)
            assert slot.semaphore is not None
            acquired = slot.semaphore.acquire(timeout=self.settings.queue_timeout_s)
        finally:
            with self._lock:  # waiting -> active in one step, so an unload never sees neither
                slot.waiting -= 1
                slot.active += int(acquired)
        if not acquired:
            raise OverloadedError(
                f"model '{spec.id}' stayed busy for {self.settings.queue_timeout_s:.0f} s; retry later",
                retry_after=self._retry_after(slot),
            )
        try:
            yield instance
        finally:
            with self._lock:
                slot.active -= 1
                slot.last_used = time.monotonic()
            slot.semaphore.release()

    def _retry_after(self, slot: _Slot) -> float:
        return float(max(1, min(60, slot.waiting)))

    def _slot(self, spec: ModelSpec) -> _Slot:
        with self._lock:
            slot = self._slots.get(spec.id)
            if slot is None or slot.spec != spec:
                slot = self._slots[spec.id] = _Slot(spec)
            return slot

    # -- loading and unloading -------------------------------------------------------------
    def load(self, spec: ModelSpec) -> ModelInstance:
        """Load `spec` now (used for preloading); a no-op when it is loaded."""
        spec.require_accepted(self.settings.accept_licenses)
        return self._ensure_loaded(self._slot(spec))

    def _ensure_loaded(self, slot: _Slot) -> ModelInstance:
        if slot.instance is not None:
            return slot.instance
        with slot.load_lock:  # one load per model, however many requests arrive at once
            if slot.instance is not None:
                return slot.instance
            spec = slot.spec
            self._notify("loading", spec.id)
            rss0, t0 = _rss_bytes(), time.perf_counter()
            try:
                instance = self._loader(spec, self.settings)
            except OmniforgeError:
                raise
            except Exception as exc:  # engine errors: corrupt weights, wrong format, ...
                raise ModelLoadError(f"model '{spec.id}' failed to load: {type(exc).__name__}: {exc}") from exc
            seconds = time.perf_counter() - t0
            rss_delta = max(0, _rss_bytes() - rss0)
            slot.memory = max(instance.memory_bytes(), rss_delta)
            slot.load_seconds = seconds
            slot.semaphore = threading.Semaphore(max(1, instance.concurrency))
            slot.last_used = time.monotonic()
            slot.instance = instance
            log.info(
                "loaded %s (%s) in %.2f s, %.0f MB (process RSS +%.0f MB)",
                spec.id, spec.backend, seconds, slot.memory / 2**20, rss_delta / 2**20,
            )
            self._notify("loaded", spec.id)
        self._enforce_budget(keep=slot.spec.id)
        return instance

    def _enforce_budget(self, keep: str) -> None:
        budget = self.settings.memory_budget_mb * 2**20
        while True:
            with self._lock:
                loaded = [s for s in self._slots.values() if s.instance is not None]
                total = sum(s.memory for s in loaded)
                if total <= budget:
                    return
                idle = [s for s in loaded if s.spec.id != keep and s.active == 0 and s.waiting == 0]
                if not idle:
                    log.warning("loaded models use %.0f MB, over the %d MB budget, and none is idle",
                                total / 2**20, self.settings.memory_budget_mb)
                    return
                victim = min(idle, key=lambda s: s.last_used)
            self.unload(victim.spec.id, reason=f"memory budget {self.settings.memory_budget_mb} MB")

    def unload(self, model_id: str, reason: str = "requested") -> bool:
        with self._lock:
            slot = self._slots.get(model_id)
            if slot is None or slot.instance is None or slot.active:
                return False
            instance, slot.instance, slot.memory = slot.instance, None, 0
        with slot.load_lock:
            instance.close()
        log.info("unloaded %s (%s)", model_id, reason)
        self._notify("unloaded", model_id)
        return True

    def close(self) -> None:
        for model_id in list(self._slots):
            self.unload(model_id, reason="shutdown")

    # -- introspection ---------------------------------------------------------------------
    def loaded(self) -> list[LoadedModel]:
        now = time.monotonic()
        with self._lock:
            return [
                LoadedModel(s.spec.id, s.spec.modality, s.memory, s.load_seconds, s.active, s.waiting,
                            now - s.last_used)
                for s in self._slots.values()
                if s.instance is not None
            ]

    def queue_depths(self) -> dict[str, int]:
        with self._lock:
            return {mid: s.waiting for mid, s in self._slots.items()}

    def _notify(self, event: str, model_id: str) -> None:
        for listener in self.listeners:
            listener(event, model_id)
