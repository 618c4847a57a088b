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
    from ...governance.provenance import sniff_media_type, verify

    service = service_of(request)
    data = await read_upload(request, file, "file", "the file to verify")
    media_type = file.content_type if file.content_type and file.content_type != "application/octet-stream" else None
    if (media_type or "").startswith("text/") or (media_type is None and sniff_media_type(data) is None):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None:
            from ...governance.textmark import verify_text

            spec = await blocking(service.catalog.resolve, model, "text")
            return await blocking(verify_text, text, spec, service.settings)
    return await blocking(verify, data, media_type, service.settings)
