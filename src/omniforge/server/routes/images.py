"""POST /v1/images/generations, /v1/images/edits, /v1/images/variations and the files they link.

Generations take JSON, edits and variations a multipart upload, as OpenAI's API does. Images
come back as base64 (`b64_json`) or as a `url` this server serves from its home folder for an
hour. Beyond OpenAI's fields (e.g. through the openai client's `extra_body`), generations take
negative_prompt, seed, steps, guidance and scheduler; edits those and strength; variations
seed, steps and strength.
"""

from __future__ import annotations

import base64
import contextlib
import re
import secrets
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse

from ...catalog import ModelSpec
from ...errors import InvalidRequestError, NotFoundError
from ...imaging import CONTENT_TYPES, IMAGE_FORMATS, parse_size
from ...storage import write_atomic
from ...types import ImageParams, ImageResult
from ..protocol import ImageGenerationRequest
from . import blocking, now, read_upload, served_by, service_of

router = APIRouter(tags=["images"])

RESPONSE_FORMATS = ("url", "b64_json")
URL_LIFETIME_S = 3600  # as OpenAI's image URLs
_FILE_NAME = re.compile(r"^img_[0-9a-f]{24}\.(png|jpeg|webp)$")


def _check_formats(response_format: str | None, output_format: str | None) -> tuple[str, str]:
    rf = response_format or "b64_json"
    if rf not in RESPONSE_FORMATS:
        raise InvalidRequestError("response_format must be url or b64_json", param="response_format")
    fmt = output_format or "png"
    if fmt not in IMAGE_FORMATS:
        raise InvalidRequestError(f"output_format must be one of {', '.join(IMAGE_FORMATS)}", param="output_format")
    return rf, fmt


def _options(**fields: Any) -> dict[str, Any]:
    """ImageParams keyword arguments from the fields a request set (None: the model's default)."""
    size = parse_size(fields.pop("size", None))
    opts = {k: v for k, v in fields.items() if v is not None}
    if size:
        opts["width"], opts["height"] = size
    if opts.get("quality") == "auto":
        opts.pop("quality")
    return opts


def _respond(request: Request, spec: ModelSpec, result: ImageResult, rf: str, fmt: str, quality: str | None) -> Any:
    service = service_of(request)
    data = []
    for img in result.images:
        encoded = service.encode_image(img, fmt, spec.id)
        if rf == "b64_json":
            data.append({"b64_json": base64.b64encode(encoded).decode(), "revised_prompt": None})
        else:
            folder = service.settings.home / "files" / "images"
            _drop_expired(folder)
            name = f"img_{secrets.token_hex(12)}.{fmt}"
            write_atomic(folder / name, encoded)
            data.append({"url": str(request.url_for("image_file", name=name)), "revised_prompt": None})
    first = result.images[0]
    body = {
        "created": now(), "data": data, "output_format": fmt, "size": f"{first.width}x{first.height}",
        "quality": quality or "auto",
    }
    headers = {**served_by(request, spec), "x-omniforge-seed": str(result.seed), "x-omniforge-steps": str(result.steps)}
    return JSONResponse(body, headers=headers)


def _drop_expired(folder: Path) -> None:
    if folder.is_dir():
        cutoff = time.time() - URL_LIFETIME_S
        for f in folder.glob("img_*"):
            with contextlib.suppress(OSError):
                if f.stat().st_mtime < cutoff:
                    f.unlink()


@router.post("/v1/images/generations")
async def create_image(body: ImageGenerationRequest, request: Request) -> Any:
    service = service_of(request)
    rf, fmt = _check_formats(body.response_format, body.output_format)
    if body.stream:
        raise InvalidRequestError("streamed partial images are not supported; set stream to false", param="stream")
    if body.background == "transparent":
        raise InvalidRequestError("images are opaque here; background takes opaque or auto", param="background")
    spec = await blocking(service.pick, body.model, "image")
    served_by(request, spec)

    params = ImageParams(prompt=body.prompt, **_options(
        n=body.n, size=body.size, quality=body.quality, negative_prompt=body.negative_prompt, seed=body.seed,
        steps=body.steps, guidance=body.guidance, scheduler=body.scheduler,
    ))
    spec, result = await blocking(service.generate_image, params, spec.id)
    return await blocking(_respond, request, spec, result, rf, fmt, body.quality)


Text = Annotated[str | None, Form()]
Int = Annotated[int | None, Form()]
Float = Annotated[float | None, Form()]


async def _images(request: Request, image: list[UploadFile] | None, plain: list[UploadFile] | None) -> bytes:
    files = (image or []) + (plain or [])
    if not files:
        raise InvalidRequestError("image is required (a PNG, JPEG or WebP upload)", param="image")
    if len(files) > 1:
        raise InvalidRequestError("this server edits one image per request", param="image")
    return await read_upload(request, files[0], "image", "the image")


@router.post("/v1/images/edits")
async def create_image_edit(
    request: Request,
    prompt: Annotated[str, Form()],
    image: Annotated[list[UploadFile] | None, File(alias="image[]")] = None,
    image_plain: Annotated[list[UploadFile] | None, File(alias="image")] = None,
    mask: Annotated[UploadFile | None, File()] = None,
    model: Text = None, n: Int = None, size: Text = None, quality: Text = None, response_format: Text = None,
    output_format: Text = None, negative_prompt: Text = None, seed: Int = None, steps: Int = None,
    guidance: Float = None, scheduler: Text = None, strength: Float = None,
) -> Any:
    service = service_of(request)
    rf, fmt = _check_formats(response_format, output_format)
    spec = await blocking(service.pick, model, "image")
    served_by(request, spec)
    data = await _images(request, image, image_plain)
    mask_data = await read_upload(request, mask, "mask", "the mask") if mask is not None else None
    opts = _options(n=n, size=size, quality=quality, negative_prompt=negative_prompt, seed=seed, steps=steps,
                    guidance=guidance, scheduler=scheduler, strength=strength)
    spec, result = await blocking(service.edit_image, data, prompt, mask_data, spec.id, **opts)
    return await blocking(_respond, request, spec, result, rf, fmt, quality)


@router.post("/v1/images/variations")
async def create_image_variation(
    request: Request,
    image: Annotated[UploadFile, File()],
    model: Text = None, n: Int = None, size: Text = None, response_format: Text = None, seed: Int = None,
    steps: Int = None, strength: Float = None,
) -> Any:
    service = service_of(request)
    rf, fmt = _check_formats(response_format, None)
    spec = await blocking(service.pick, model, "image")
    served_by(request, spec)
    data = await read_upload(request, image, "image", "the image")
    opts = _options(n=n, size=size, seed=seed, steps=steps, strength=strength)
    spec, result = await blocking(service.image_variations, data, spec.id, **opts)
    return await blocking(_respond, request, spec, result, rf, fmt, None)


@router.get("/v1/images/files/{name}", name="image_file")
async def image_file(name: str, request: Request) -> Any:
    path = service_of(request).settings.home / "files" / "images" / name
    if not _FILE_NAME.match(name) or not path.is_file():
        raise NotFoundError(f"no image file '{name}'", param="name")
    return FileResponse(path, media_type=CONTENT_TYPES[name.rsplit(".", 1)[1]])
