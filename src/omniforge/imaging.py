"""Image bytes in and out: decoding uploads (with clear errors), masks, sizes and encoding results."""

from __future__ import annotations

import base64
import binascii
import io
import re
from typing import Any

from .errors import InvalidRequestError

IMAGE_FORMATS = ("png", "jpeg", "webp")
CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
MAX_PIXELS = 40_000_000  # decompression-bomb guard for uploads
_DATA_URL = re.compile(r"^data:(?P<type>[\w/+.-]+)?(;[\w=.-]+)*;base64,(?P<data>.*)$", re.S)


def decode_image(data: bytes, param: str = "image", *, keep_alpha: bool = False) -> Any:
    """Decode an uploaded image (PNG, JPEG, WebP, GIF, BMP, ...) to an RGB (or RGBA) PIL image."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # PIL refuses bigger images before decoding them
    if not data:
        raise InvalidRequestError(f"{param} is empty", param=param)
    try:
        img = Image.open(io.BytesIO(data))
        if img.width * img.height > MAX_PIXELS:
            raise InvalidRequestError(
                f"{param} is {img.width}x{img.height}, over the {MAX_PIXELS:,}-pixel limit", param=param
            )
        img.load()
    except Image.DecompressionBombError:
        raise InvalidRequestError(f"{param} is over the {MAX_PIXELS:,}-pixel limit", param=param) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidRequestError(
            f"{param} is not a readable image (PNG, JPEG, WebP, GIF or BMP): {exc}", param=param
        ) from None
    if keep_alpha and ("A" in img.getbands() or img.mode == "P" and "transparency" in img.info):
        return img.convert("RGBA")
    return img.convert("RGB")


def decode_data_url(url: str, param: str) -> bytes:
    """The bytes of a base64 `data:` URL; anything else is refused (remote URLs are not fetched)."""
    m = _DATA_URL.match(url.strip()) if isinstance(url, str) else None
    if not m:
        raise InvalidRequestError(
            f"{param} must be a base64 data URL (data:image/png;base64,...); remote URLs are not fetched",
            param=param,
        )
    try:
        return base64.b64decode("".join(m.group("data").split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(f"{param} is not valid base64", param=param) from None


def edit_inputs(image: bytes, mask: bytes | None) -> tuple[Any, Any]:
    """The (RGB image, L mask or None) of an edit request, as OpenAI defines them.

    The area to repaint is where the mask is fully transparent (OpenAI's convention); a mask with
    no alpha channel, or a fully opaque one, repaints its white pixels. With no mask, an image with transparent pixels
    repaints those; an opaque image is an image-to-image request.
    """
    from PIL import Image

    img = decode_image(image, "image", keep_alpha=True)
    if mask is not None:
        m = decode_image(mask, "mask", keep_alpha=True)
        if m.size != img.size:
            raise InvalidRequestError(
                f"mask is {m.width}x{m.height} but image is {img.width}x{img.height}; they must match",
                param="mask",
            )
        if m.mode == "RGBA" and m.getchannel("A").getextrema()[0] < 255:
            alpha = m.getchannel("A")
            area = alpha.point(lambda a: 255 if a == 0 else 0)
        else:
            area = m.convert("L").point(lambda v: 255 if v >= 128 else 0)
    elif img.mode == "RGBA" and img.getchannel("A").getextrema()[0] == 0:
        area = img.getchannel("A").point(lambda a: 255 if a == 0 else 0)
    else:
        area = None
    if area is not None and area.getextrema()[1] == 0:
        raise InvalidRequestError("mask marks no area to edit (no transparent or white pixels)", param="mask")
    rgb = img.convert("RGB") if img.mode != "RGB" else img
    if area is not None:
        area = area.convert("L")
        assert isinstance(area, Image.Image)
    return rgb, area


def parse_size(size: str | None, param: str = "size") -> tuple[int, int] | None:
    """'WIDTHxHEIGHT' -> (width, height); None or 'auto' -> None (the model's default)."""
    if size is None or size == "auto":
        return None
    m = re.fullmatch(r"\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*", size) if isinstance(size, str) else None
    if not m:
        raise InvalidRequestError(f"{param} must look like 512x512 (or auto), not {size!r}", param=param)
    width, height = int(m.group(1)), int(m.group(2))
    if not width or not height:
        raise InvalidRequestError(f"{param} must be at least 1x1, not {size!r}", param=param)
    return width, height


def encode_image(img: Any, fmt: str = "png", quality: int = 90) -> bytes:
    if fmt not in IMAGE_FORMATS:
        raise InvalidRequestError(f"output_format must be one of {', '.join(IMAGE_FORMATS)}", param="output_format")
    buf = io.BytesIO()
    if fmt == "png":
        img.save(buf, format="PNG", optimize=False)
    else:
        img.convert("RGB").save(buf, format=fmt.upper(), quality=quality)
    return buf.getvalue()
