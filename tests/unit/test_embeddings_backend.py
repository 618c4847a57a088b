"""sentence-transformers backend on the embedded all-MiniLM-L6-v2: shape, normalization,
meaning, token counting and OpenAI's rejection of over-long and empty inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from omniforge.backends import load_model
from omniforge.catalog.embedded import EMBEDDED
from omniforge.catalog.spec import ModelSpec
from omniforge.config import Settings, load_settings
from omniforge.errors import InvalidRequestError, ModelLoadError
from tests.conftest import make_home

SPEC = next(spec for spec in EMBEDDED if spec.id == "all-minilm-l6-v2")


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return load_settings(home=make_home(tmp_path_factory.mktemp("embeddings")))


@pytest.fixture(scope="module")
def model(settings: Settings):
    instance = load_model(SPEC, settings)
    yield instance
    instance.close()


def test_shape_and_normalization(model) -> None:
    result = model.embed(["The cat sits on the mat.", "Stock markets fell sharply today."])
    vectors = np.array(result.vectors)
    assert model.dimensions == 384 and vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert all(isinstance(x, float) for x in result.vectors[0][:5])  # JSON-ready


def test_similar_sentences_are_closer(model) -> None:
    cat, kitten, finance = np.array(
        model.embed(
            ["A cat is sleeping on the sofa.", "A kitten naps on the couch.", "Quarterly revenue grew ten percent."]
        ).vectors
    )
    assert cat @ kitten > 0.5
    assert cat @ kitten > cat @ finance + 0.3


def test_order_is_kept(model) -> None:
    a, b = "first sentence here", "an entirely different second one"
    forward = np.array(model.embed([a, b]).vectors)
    backward = np.array(model.embed([b, a]).vectors)
    assert np.allclose(forward, backward[::-1], atol=1e-5)


def test_prompt_tokens_are_counted_with_the_tokenizer(model) -> None:
    texts = ["hello world", "embeddings are vectors"]
    result = model.embed(texts)
    assert result.prompt_tokens == sum(model.count_tokens(texts))
    assert model.count_tokens(["hello world"]) == [2]  # no [CLS]/[SEP]


def test_over_long_input_is_rejected_not_truncated(model) -> None:
    assert model.max_tokens == 254  # max_seq_length 256 less [CLS] and [SEP]
    at_limit = " ".join(["word"] * model.max_tokens)
    assert model.count_tokens([at_limit]) == [model.max_tokens]
    assert len(model.embed([at_limit]).vectors) == 1
    with pytest.raises(InvalidRequestError) as info:
        model.embed(["short one", at_limit + " word"])
    assert info.value.param == "input"
    assert "input[1]" in info.value.message and "255 tokens" in info.value.message


@pytest.mark.parametrize(("texts", "needle"), [([], "at least one"), (["fine", ""], "input[1]")])
def test_empty_inputs_are_rejected(model, texts: list[str], needle: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        model.embed(texts)
    assert info.value.param == "input" and needle in info.value.message


def test_memory_estimate(model) -> None:
    assert model.memory_bytes() > 50 * 2**20


def test_missing_folder(settings: Settings, tmp_path: Path) -> None:
    spec = ModelSpec(id="gone", modality="embedding", backend="sentence-transformers", source=str(tmp_path / "no"))
    with pytest.raises(ModelLoadError):
        load_model(spec, settings)
