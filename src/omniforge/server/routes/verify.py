"""POST /v1/verify: the provenance of an uploaded file (C2PA manifest, signer, model, watermark), or
for a text file (text/plain, or anything that is UTF-8 and no known media) its text watermark."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile

from . import blocking, read_upload, service_of

router = APIRouter(tags=["provenance"])


@router.post("/v1/verify")
async def verify_file(request: Request, file: Annotated[UploadFile, File()],
                      model: Annotated[str | None, Form()] = None) -> dict[str, Any]:
    from ...governance.provenance import verify
    from ...governance.textmark import as_text, verify_text

    service = service_of(request)
    data = await read_upload(request, file, "file", "the file to verify")
    media_type = file.content_type if file.content_type and file.content_type != "application/octet-stream" else None
    text = as_text(data, media_type)
    if text is not None:
        spec = await blocking(service.catalog.resolve, model, "text")
        return await blocking(verify_text, text, spec, service.settings)
    return await blocking(verify, data, media_type, service.settings)
