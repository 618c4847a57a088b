"""POST /v1/verify: the provenance of an uploaded file (C2PA manifest, signer, model, watermark)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Request, UploadFile

from . import blocking, read_upload, service_of

router = APIRouter(tags=["provenance"])


@router.post("/v1/verify")
async def verify_file(request: Request, file: Annotated[UploadFile, File()]) -> dict[str, Any]:
    from ...governance.provenance import verify

    data = await read_upload(request, file, "file", "the file to verify")
    media_type = file.content_type if file.content_type and file.content_type != "application/octet-stream" else None
    return await blocking(verify, data, media_type, service_of(request).settings)
