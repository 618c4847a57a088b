"""GET /v1/models and /v1/models/{id}: the catalog as OpenAI model objects.

Besides OpenAI's id/object/created/owned_by, each model carries what a client may want to pick
by: modality, tasks, license, aliases, languages and whether it is loaded now. Retrieving an
OpenAI name (gpt-4o-mini, whisper-1, ...) answers with the local model it resolves to, as `root`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ...catalog import OPENAI_NAMES, ModelSpec
from ...catalog.catalog import DEFAULT_FIELDS
from ...errors import ModelNotFoundError, OmniforgeError
from ..protocol import Model, ModelList
from . import blocking, served_by, service_of

router = APIRouter(tags=["models"])

_MODALITY_OF_DEFAULT = {field: modality for modality, field in DEFAULT_FIELDS.items()}


def _model(spec: ModelSpec, created: int, loaded: set[str], name: str | None = None) -> Model:
    return Model(
        id=name or spec.id,
        created=created,
        root=spec.id,
        modality=spec.modality,
        backend=spec.backend,
        tasks=spec.tasks,
        license=spec.license,
        aliases=spec.aliases,
        languages=spec.languages,
        description=spec.description,
        embedded=spec.embedded,
        loaded=spec.id in loaded,
    )


def _loaded(request: Request) -> set[str]:
    return {m.id for m in service_of(request).runtime.loaded()}


@router.get("/v1/models", response_model=ModelList)
async def list_models(request: Request) -> ModelList:
    specs = await blocking(service_of(request).models)
    created, loaded = request.app.state.started, _loaded(request)
    return ModelList(data=[_model(s, created, loaded) for s in specs])


@router.get("/v1/models/{model_id:path}", response_model=Model)
async def retrieve_model(model_id: str, request: Request) -> JSONResponse:
    service = service_of(request)
    try:
        spec = await blocking(service.model, model_id)
    except ModelNotFoundError:
        if model_id not in OPENAI_NAMES:
            raise
        try:  # an OpenAI name: the configured default of its modality
            spec = await blocking(service.catalog.resolve, model_id, _MODALITY_OF_DEFAULT[OPENAI_NAMES[model_id]])
        except OmniforgeError:
            raise ModelNotFoundError(f"The model '{model_id}' does not exist", param="model") from None
    body = _model(spec, request.app.state.started, _loaded(request), name=model_id)
    return JSONResponse(body.model_dump(), headers=served_by(request, spec))
