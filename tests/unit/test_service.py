"""The service layer: validation with parameter names, primed streams, leases released."""

from __future__ import annotations

import gc

import pytest

from omniforge.config import load_settings
from omniforge.errors import ContextLengthExceededError, InvalidRequestError, ModelNotFoundError
from omniforge.service import Service
from omniforge.types import GenerationParams, Message
from tests.fakes import EchoModel, echo_spec


@pytest.fixture
def service() -> Service:
    EchoModel.gate.set()
    svc = Service(load_settings(default_chat_model="echo"))
    svc.catalog.add(echo_spec())
    return svc


def test_chat_and_complete_run_through_the_runtime(service: Service) -> None:
    [r] = service.chat([Message("user", "hello there world")])
    assert r.text == "hello there world " and r.finish_reason == "stop"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (3, 3, 6)
    [r] = service.complete("a b c d", params=GenerationParams(max_tokens=2))
    assert r.text == "a b " and r.finish_reason == "length"


def test_template_stops_and_user_stops_both_apply(service: Service) -> None:
    [r] = service.chat([Message("user", "one STOP two")], model="gpt-4o-mini")  # OpenAI name -> default
    assert r.text == "one "
    [r] = service.complete("one two three", params=GenerationParams(stop=["three"]))
    assert r.text == "one two "


def test_n_choices_are_indexed(service: Service) -> None:
    results = service.complete("x y", n=3)
    assert [r.text for r in results] == ["x y "] * 3


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"temperature": 3.0}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"response_format": {"type": "json_schema"}}, "response_format"),
    ],
)
def test_bad_params_name_the_parameter(service: Service, kwargs: dict, param: str) -> None:
    with pytest.raises(InvalidRequestError) as err:
        service.complete("x", params=GenerationParams(**kwargs))
    assert err.value.param == param and err.value.status_code == 400


def test_bad_messages_and_n(service: Service) -> None:
    with pytest.raises(InvalidRequestError, match="at least one"):
        service.chat([])
    with pytest.raises(InvalidRequestError) as err:
        service.chat([Message("robot", "hi")])  # type: ignore[arg-type]
    assert err.value.param == "messages[0].role"
    with pytest.raises(InvalidRequestError, match="n must be"):
        service.complete("x", n=99)


def test_errors_surface_before_the_stream_starts_and_release_the_lease(service: Service) -> None:
    with pytest.raises(ContextLengthExceededError):
        service.stream_complete("w " * 100)
    with pytest.raises(InvalidRequestError, match="cannot enforce response_format"):
        service.stream_complete("x", params=GenerationParams(response_format={"type": "json_object"}))
    with pytest.raises(InvalidRequestError, match="fill-in-the-middle"):
        service.stream_complete("x", suffix="y")
    with pytest.raises(ModelNotFoundError):
        service.stream_complete("x", model="missing")
    [info] = service.runtime.loaded()
    assert info.active == 0 and info.waiting == 0


def test_abandoned_stream_releases_its_lease(service: Service) -> None:
    stream = service.stream_complete("a b c d e f")
    assert next(stream)[1].text == "a "
    [info] = service.runtime.loaded()
    assert info.active == 1
    del stream
    gc.collect()
    [info] = service.runtime.loaded()
    assert info.active == 0


def test_embedding_and_speech_validation_happens_before_loading(service: Service) -> None:
    with pytest.raises(InvalidRequestError) as err:
        service.embed([])
    assert err.value.param == "input"
    with pytest.raises(InvalidRequestError) as err:
        service.speak("   ")
    assert err.value.param == "input"
    with pytest.raises(InvalidRequestError) as err:
        service.speak("hi", speed=9)
    assert err.value.param == "speed"
    with pytest.raises(InvalidRequestError) as err:
        service.speak("hi", fmt="midi")
    assert err.value.param == "response_format"
    assert [m.id for m in service.runtime.loaded()] == []
