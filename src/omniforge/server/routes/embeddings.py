"""POST /v1/embeddings: a string or a list of strings to vectors, as floats or base64.

base64 is the little-endian float32 bytes of each vector, as OpenAI sends it (the openai client
asks for base64 by default). Token-id input is refused; `dimensions` the model cannot produce
is refused by the service.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ...errors import InvalidRequestError
from ..metering import cost_fields
from ..protocol import Embedding, EmbeddingList, EmbeddingRequest, EmbeddingUsage
from . import blocking, metrics_of, served_by, service_of

router = APIRouter(tags=["embeddings"])


def _texts(value: Any) -> str | list[str]:
    if isinstance(value, str):
        return value
    if value and all(isinstance(v, str) for v in value):
        return list(value)
    if not value:
        raise InvalidRequestError("input must not be empty", param="input")
    raise InvalidRequestError(
        "input as token ids is not supported; send text (a string or a list of strings)", param="input"
    )


def _b64(vector: list[float]) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


@router.post("/v1/embeddings", response_model=EmbeddingList)
async def create_embeddings(body: EmbeddingRequest, request: Request) -> JSONResponse:
    service = service_of(request)
    texts = _texts(body.input)
    if body.dimensions is not None and body.dimensions < 1:
        raise InvalidRequestError("dimensions must be at least 1", param="dimensions")
    spec = await blocking(service.pick, body.model, "embedding")
    headers = served_by(request, spec)
    spec, result = await blocking(service.embed, texts, spec.id, body.dimensions)
    encode = _b64 if body.encoding_format == "base64" else (lambda v: [float(x) for x in v])
    metrics_of(request).count_tokens(spec.id, result.prompt_tokens)
    body_out = EmbeddingList(
        data=[Embedding(embedding=encode(v), index=i) for i, v in enumerate(result.vectors)],
        model=spec.id,
        usage=EmbeddingUsage(prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens,
                             **cost_fields(service.meter)),
    )
    return JSONResponse(body_out.model_dump(), headers=headers)
