"""POST /v1/chat/completions through the openai client, on the embedded gemma-3-270m: plain and
streamed (with usage), stop, n, seed determinism, JSON output enforced by grammar, content
parts, and the refusals (media parts, context overflow)."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from .helpers import assert_alive

MODEL = "gpt-4o-mini"  # an OpenAI name: resolves to the default chat model
Q = [{"role": "user", "content": "Name three colours."}]


def test_chat_plain(client: openai.OpenAI) -> None:
    response = client.chat.completions.with_raw_response.create(model=MODEL, messages=Q, max_tokens=12, seed=1)
    assert response.headers["x-omniforge-model"] == "gemma-3-270m"
    result = response.parse()
    assert result.id.startswith("chatcmpl-") and result.object == "chat.completion"
    assert result.model == "gemma-3-270m"
    (choice,) = result.choices
    assert choice.index == 0 and choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.finish_reason in ("stop", "length")
    assert result.usage.prompt_tokens > 0 and 0 < result.usage.completion_tokens <= 12
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens


def test_max_completion_tokens(client: openai.OpenAI) -> None:
    result = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        max_completion_tokens=3, seed=2,
    )
    assert result.usage.completion_tokens <= 3


def test_stream_with_usage_matches_the_whole_answer(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model=MODEL, messages=Q, max_tokens=12, seed=3, temperature=0.7)
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=Q, max_tokens=12, seed=3, temperature=0.7, stream=True,
        stream_options={"include_usage": True},
    ))
    assert chunks[0].choices[0].delta.role == "assistant"
    *body, last = chunks
    assert last.choices == [] and last.usage is not None
    assert all(c.usage is None for c in body)
    assert all(c.id == chunks[0].id and c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in body)
    assert text == whole.choices[0].message.content
    assert body[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert last.usage.completion_tokens == whole.usage.completion_tokens
    assert last.usage.prompt_tokens == whole.usage.prompt_tokens


def test_stream_without_usage(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model=MODEL, messages=Q, max_tokens=4, stream=True))
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert all(c.usage is None for c in chunks)


def test_seed_makes_sampling_repeatable(client: openai.OpenAI) -> None:
    def ask(seed: int) -> str:
        r = client.chat.completions.create(model=MODEL, messages=Q, max_tokens=12, temperature=1.0, seed=seed)
        return r.choices[0].message.content or ""

    assert ask(42) == ask(42)


def test_stop_cuts_the_answer_before_the_stop_string(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Tell me about the sea."}]
    free = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=16, seed=5, temperature=0.7)
    text = free.choices[0].message.content or ""
    words = text.split()
    if len(words) < 3:
        pytest.skip(f"the model answered too briefly to pick a stop word: {text!r}")
    stop = words[2]
    cut = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=16, seed=5, temperature=0.7,
                                         stop=[stop, "@@@@"])
    # A chat answer that ends drops the whitespace before its end (as it does before "\nUser:").
    assert cut.choices[0].message.content == text[: text.index(stop)].rstrip()
    assert cut.choices[0].finish_reason == "stop"
    single = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=16, seed=5, temperature=0.7,
                                            stop=stop)  # a plain string works too
    assert single.choices[0].message.content == cut.choices[0].message.content


def test_n_choices(client: openai.OpenAI) -> None:
    result = client.chat.completions.create(model=MODEL, messages=Q, max_tokens=6, n=2, seed=9)
    assert [c.index for c in result.choices] == [0, 1]
    assert all(isinstance(c.message.content, str) for c in result.choices)
    streamed = list(client.chat.completions.create(model=MODEL, messages=Q, max_tokens=6, n=2, seed=9, stream=True))
    for i in (0, 1):
        text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices and c.choices[0].index == i)
        assert text == result.choices[i].message.content


@pytest.mark.slow  # grammar-constrained sampling is several times slower per token
def test_json_object(client: openai.OpenAI) -> None:
    result = client.chat.completions.create(
        model=MODEL, max_tokens=48, seed=1, response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "Describe a cat as JSON."}],
    )
    assert isinstance(json.loads(result.choices[0].message.content or ""), dict)


@pytest.mark.slow
def test_json_schema_is_enforced(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 16}, "age": {"type": "integer"},
                       "indoor": {"type": "boolean"}},
        "required": ["name", "age", "indoor"],
        "additionalProperties": False,
    }
    result = client.chat.completions.create(
        model=MODEL, max_tokens=60, seed=1,
        messages=[{"role": "user", "content": "Give me a cat with a name, an age and whether it lives indoors."}],
        response_format={"type": "json_schema", "json_schema": {"name": "cat", "schema": schema, "strict": True}},
    )
    data = json.loads(result.choices[0].message.content or "")
    assert set(data) == {"name", "age", "indoor"}
    assert isinstance(data["name"], str) and isinstance(data["age"], int) and isinstance(data["indoor"], bool)


def test_content_parts_are_joined(client: openai.OpenAI) -> None:
    parts = [{"type": "text", "text": "Name three"}, {"type": "text", "text": "colours."}]
    result = client.chat.completions.create(model=MODEL, max_tokens=4, messages=[{"role": "user", "content": parts}])
    assert result.choices[0].finish_reason in ("stop", "length")


def test_unknown_media_parts_are_refused_clearly(client: openai.OpenAI, http: httpx.Client) -> None:
    parts = [{"type": "text", "text": "What is this?"},
             {"type": "file", "file": {"file_data": "data:application/pdf;base64,AAAA"}}]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, max_tokens=4, messages=[{"role": "user", "content": parts}])
    assert "'file' part" in info.value.message
    assert info.value.param == "messages[0].content[1].type"
    assert_alive(http)


@pytest.mark.parametrize("stream", [False, True])
def test_context_overflow_is_400(client: openai.OpenAI, http: httpx.Client, stream: bool) -> None:
    long = "hello " * 10_000  # past the 8192-token context
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, max_tokens=4, stream=stream,
                                       messages=[{"role": "user", "content": long}])
    assert info.value.code == "context_length_exceeded"
    assert_alive(http)


def test_stream_releases_the_model_when_the_client_leaves(http: httpx.Client) -> None:
    body = {"model": MODEL, "stream": True, "max_tokens": 400,
            "messages": [{"role": "user", "content": "Tell a story."}]}
    with http.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        loaded = {m["id"]: m for m in http.get("/health").json()["models_loaded"]}
        if loaded["gemma-3-270m"]["active"] == 0:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the chat model is still generating for a client that left")
