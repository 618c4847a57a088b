"""GET /v1/models and /v1/models/{id} through the openai client."""

from __future__ import annotations

import httpx
import openai
import pytest

from omniforge.catalog.spec import MODALITIES

from .helpers import assert_openai_error

EMBEDDED = {"gemma-3-270m", "piper-en-us-joe", "whisper-tiny.en", "whisper-base", "all-minilm-l6-v2", "house-image",
            "storyboard", "image-facts"}


def test_list_models(client: openai.OpenAI) -> None:
    models = client.models.list()
    ids = {m.id for m in models.data}
    assert EMBEDDED <= ids
    for m in models.data:
        assert m.object == "model" and m.owned_by == "omniforge" and isinstance(m.created, int)
        assert m.model_extra and m.model_extra["modality"] in MODALITIES


def test_retrieve_model_with_dots_in_its_id(client: openai.OpenAI) -> None:
    model = client.models.retrieve("whisper-tiny.en")
    assert model.id == "whisper-tiny.en"
    assert model.model_extra["modality"] == "transcription"
    assert model.model_extra["license"] == "MIT"


@pytest.mark.parametrize(
    ("name", "local"),
    [("gpt-4o-mini", "gemma-3-270m"), ("tts-1", "piper-en-us-joe"), ("whisper-1", "whisper-tiny.en"),
     ("text-embedding-3-small", "all-minilm-l6-v2"), ("dall-e-3", "house-image"), ("gpt-image-1", "house-image"),
     ("sora-2", "storyboard")],
)
def test_openai_names_resolve_to_local_defaults(client: openai.OpenAI, name: str, local: str) -> None:
    response = client.models.with_raw_response.retrieve(name)
    assert response.headers["x-omniforge-model"] == local
    model = response.parse()
    assert model.id == name and model.model_extra["root"] == local


def test_unknown_model_is_404(client: openai.OpenAI, http: httpx.Client) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("no-such-model")
    assert info.value.code == "model_not_found"
    assert_openai_error(http.get("/v1/models/no-such-model"), 404, "invalid_request_error", "model_not_found")
