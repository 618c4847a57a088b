"""POST /v1/embeddings through the openai client: float and base64 encodings, usage, refusals."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import openai
import pytest

from .helpers import assert_alive, assert_openai_error

TEXTS = ["The cat sat on the mat.", "A feline rested on the rug.", "Quarterly revenue grew by ten percent."]


def test_embeddings_float(client: openai.OpenAI) -> None:
    response = client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=TEXTS, encoding_format="float"
    )
    assert response.headers["x-omniforge-model"] == "all-minilm-l6-v2"
    result = response.parse()
    assert result.object == "list" and result.model == "all-minilm-l6-v2"
    assert [d.index for d in result.data] == [0, 1, 2]
    vectors = np.array([d.embedding for d in result.data])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    # Paraphrases are closer to each other than to an unrelated sentence.
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    assert result.usage.prompt_tokens > 0 and result.usage.total_tokens == result.usage.prompt_tokens


def test_embeddings_base64_decodes_to_the_float_vector(client: openai.OpenAI, http: httpx.Client) -> None:
    floats = client.embeddings.create(model="all-minilm-l6-v2", input="hello world", encoding_format="float")
    raw = http.post("/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": "hello world",
                                             "encoding_format": "base64"}).json()
    encoded = raw["data"][0]["embedding"]
    assert isinstance(encoded, str)
    decoded = np.frombuffer(base64.b64decode(encoded), dtype="<f4")
    assert np.array_equal(decoded, np.asarray(floats.data[0].embedding, dtype="<f4"))
    # The openai client asks for base64 by default and decodes it itself.
    default = client.embeddings.create(model="all-minilm-l6-v2", input="hello world")
    assert np.allclose(default.data[0].embedding, floats.data[0].embedding)


def test_unsupported_dimensions_are_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="all-minilm-l6-v2", input="hi", dimensions=64)
    assert info.value.param == "dimensions"
    assert "384" in info.value.message


@pytest.mark.parametrize("bad_input", [[1, 2, 3], [[1, 2], [3]], [], 5, ["ok", 3]])
def test_bad_input_is_400(http: httpx.Client, bad_input: object) -> None:
    r = http.post("/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": bad_input})
    err = assert_openai_error(r, 400, "invalid_request_error")
    assert err["param"] == "input"
    assert_alive(http)


def test_token_ids_are_refused_clearly(http: httpx.Client) -> None:
    r = http.post("/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": [101, 102]})
    assert "token ids" in assert_openai_error(r, 400, "invalid_request_error")["message"]


def test_a_text_model_cannot_embed(http: httpx.Client) -> None:
    r = http.post("/v1/embeddings", json={"model": "piper-en-us-joe", "input": "hi"})
    assert assert_openai_error(r, 400, "invalid_request_error")["param"] == "model"
