"""POST /v1/completions through the openai client: plain, several prompts, echo, streamed with
usage, and the refusals (token-id prompts; suffix where the model has no fill-in-the-middle)."""

from __future__ import annotations

import httpx
import openai
import pytest

from .helpers import assert_alive, assert_openai_error

PROMPT = "def add(a, b):\n"


def test_completion_plain(client: openai.OpenAI) -> None:
    response = client.completions.with_raw_response.create(model="gemma-3-270m", prompt=PROMPT, max_tokens=8, seed=1)
    assert response.headers["x-omniforge-model"] == "gemma-3-270m"
    result = response.parse()
    assert result.object == "text_completion" and result.id.startswith("cmpl-")
    (choice,) = result.choices
    assert isinstance(choice.text, str) and choice.finish_reason in ("stop", "length")
    assert 0 < result.usage.completion_tokens <= 8 and result.usage.prompt_tokens > 0


def test_default_max_tokens_is_openais_16(client: openai.OpenAI) -> None:
    result = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Once upon a time", seed=1)
    assert result.usage.completion_tokens <= 16


def test_prompt_list_and_echo(client: openai.OpenAI) -> None:
    result = client.completions.create(model="gemma-3-270m", prompt=["One, two,", "Red, green,"], max_tokens=3,
                                       seed=1, echo=True)
    assert [c.index for c in result.choices] == [0, 1]
    assert result.choices[0].text.startswith("One, two,") and result.choices[1].text.startswith("Red, green,")


def test_completion_stream_matches_the_whole_text(client: openai.OpenAI) -> None:
    whole = client.completions.create(model="gemma-3-270m", prompt=PROMPT, max_tokens=8, seed=4, temperature=0.5)
    chunks = list(client.completions.create(model="gemma-3-270m", prompt=PROMPT, max_tokens=8, seed=4,
                                            temperature=0.5, stream=True, stream_options={"include_usage": True}))
    *body, last = chunks
    assert last.choices == [] and last.usage.completion_tokens == whole.usage.completion_tokens
    assert "".join(c.choices[0].text for c in body) == whole.choices[0].text
    assert body[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_token_id_prompts_are_refused(http: httpx.Client) -> None:
    r = http.post("/v1/completions", json={"model": "gemma-3-270m", "prompt": [1, 2, 3]})
    err = assert_openai_error(r, 400, "invalid_request_error")
    assert err["param"] == "prompt" and "token ids" in err["message"]
    assert_alive(http)


def test_suffix_is_served_or_refused_by_name(http: httpx.Client) -> None:
    r = http.post("/v1/completions", json={"model": "gemma-3-270m", "prompt": "def f(x):\n    return ",
                                           "suffix": "\n\nprint(f(2))\n", "max_tokens": 6})
    if r.status_code == 200:
        assert isinstance(r.json()["choices"][0]["text"], str)
    else:
        err = assert_openai_error(r, 400, "invalid_request_error")
        assert err["param"] == "suffix" and "fill-in-the-middle" in err["message"]


@pytest.mark.parametrize(("body", "param"), [({"prompt": "x", "logprobs": 2}, "logprobs"),
                                             ({"prompt": "x", "best_of": 3}, "best_of"),
                                             ({"prompt": []}, "prompt"), ({"prompt": 3}, "prompt")])
def test_completion_refusals(http: httpx.Client, body: dict, param: str) -> None:
    err = assert_openai_error(http.post("/v1/completions", json=body), 400, "invalid_request_error")
    assert err["param"] == param
