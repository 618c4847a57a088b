"""The runtime: lazy load once, shared instance, bounded queue, LRU unload under a memory budget."""

from __future__ import annotations

import threading
import time

import pytest

from omniforge.config import load_settings
from omniforge.errors import ModelLoadError, OverloadedError
from omniforge.runtime import ModelManager
from tests.fakes import EchoModel, echo_spec, load_echo


@pytest.fixture(autouse=True)
def _open_gate():
    EchoModel.gate.set()
    EchoModel.loads = EchoModel.closed = 0
    yield
    EchoModel.gate.set()


def test_lazy_load_once_for_concurrent_requests() -> None:
    rt = ModelManager(load_settings(), loader=load_echo)
    spec = echo_spec()
    assert rt.loaded() == []
    seen = []

    def use() -> None:
        with rt.lease(spec) as inst:
            seen.append(inst)

    threads = [threading.Thread(target=use) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert EchoModel.loads == 1
    assert len({id(i) for i in seen}) == 1  # one instance shared by every request
    [info] = rt.loaded()
    assert info.id == "echo" and info.memory_bytes >= 10 * 2**20 and info.active == 0


def test_full_queue_is_refused_with_retry_after() -> None:
    rt = ModelManager(load_settings(max_queue=1, queue_timeout_s=5), loader=load_echo)
    spec = echo_spec()
    rt.load(spec)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with rt.lease(spec):
            holding.set()
            release.wait(5)

    def wait_in_queue() -> None:
        with rt.lease(spec):
            pass

    t1 = threading.Thread(target=hold)
    t1.start()
    holding.wait(5)
    t2 = threading.Thread(target=wait_in_queue)
    t2.start()
    deadline = time.time() + 5
    while rt.queue_depths()["echo"] < 1 and time.time() < deadline:
        time.sleep(0.01)
    with pytest.raises(OverloadedError) as err:
        with rt.lease(spec):
            pass
    assert err.value.status_code == 503 and err.value.retry_after and err.value.retry_after >= 1
    release.set()
    t1.join()
    t2.join()
    with rt.lease(spec):  # served again once the queue drains
        pass


def test_queue_timeout_answers_overloaded() -> None:
    rt = ModelManager(load_settings(queue_timeout_s=0.2), loader=load_echo)
    spec = echo_spec()
    with rt.lease(spec):
        with pytest.raises(OverloadedError, match="busy"):
            with rt.lease(spec):
                pass


def test_memory_budget_unloads_least_recently_used_idle_model() -> None:
    rt = ModelManager(load_settings(memory_budget_mb=100), loader=load_echo)
    a, b, c = echo_spec("a", 40), echo_spec("b", 40), echo_spec("c", 40)
    for spec in (a, b):
        with rt.lease(spec):
            pass
    with rt.lease(a):  # a is now more recently used than b
        pass
    with rt.lease(c):
        pass
    assert sorted(m.id for m in rt.loaded()) == ["a", "c"]
    assert EchoModel.closed == 1


def test_busy_model_is_never_unloaded() -> None:
    rt = ModelManager(load_settings(memory_budget_mb=50), loader=load_echo)
    a, b = echo_spec("a", 40), echo_spec("b", 40)
    with rt.lease(a):
        with rt.lease(b):
            assert sorted(m.id for m in rt.loaded()) == ["a", "b"]  # over budget, both busy
    assert EchoModel.closed == 0


def test_load_failure_is_a_model_load_error_and_retries() -> None:
    calls = []

    def flaky(spec, settings):
        calls.append(spec.id)
        if len(calls) == 1:
            raise RuntimeError("corrupt weights")
        return load_echo(spec, settings)

    rt = ModelManager(load_settings(), loader=flaky)
    with pytest.raises(ModelLoadError, match="corrupt weights"):
        with rt.lease(echo_spec()):
            pass
    assert rt.queue_depths()["echo"] == 0
    with rt.lease(echo_spec()) as inst:
        assert isinstance(inst, EchoModel)
