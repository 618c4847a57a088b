"""Image uploads: decoding errors, OpenAI's mask conventions, sizes, data URLs."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from omniforge.errors import InvalidRequestError
from omniforge.imaging import decode_data_url, decode_image, edit_inputs, encode_image, parse_size


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_decode_any_format_to_rgb() -> None:
    for fmt in ("png", "jpeg", "webp"):
        data = encode_image(Image.new("RGB", (10, 8), (255, 0, 0)), fmt)
        img = decode_image(data)
        assert img.mode == "RGB" and img.size == (10, 8)


@pytest.mark.parametrize("data", [b"", b"hello", b"\x89PNG\r\n\x1a\n broken"])
def test_unreadable_image_is_a_clear_error(data: bytes) -> None:
    with pytest.raises(InvalidRequestError) as info:
        decode_image(data, "image")
    assert info.value.param == "image"


def test_transparent_mask_pixels_are_the_area_to_repaint() -> None:
    image = _png(Image.new("RGB", (4, 4), (9, 9, 9)))
    mask = Image.new("RGBA", (4, 4), (0, 0, 0, 255))
    mask.putpixel((1, 2), (0, 0, 0, 0))
    rgb, area = edit_inputs(image, _png(mask))
    assert rgb.size == (4, 4)
    assert area.getpixel((1, 2)) == 255 and area.getpixel((0, 0)) == 0


def test_mask_without_alpha_repaints_white() -> None:
    image = _png(Image.new("RGB", (4, 4)))
    mask = Image.new("L", (4, 4), 0)
    mask.putpixel((3, 3), 255)
    _, area = edit_inputs(image, _png(mask))
    assert area.getpixel((3, 3)) == 255 and area.getpixel((0, 0)) == 0


def test_transparent_image_without_mask_repaints_its_transparent_part() -> None:
    img = Image.new("RGBA", (4, 4), (1, 2, 3, 255))
    img.putpixel((0, 0), (0, 0, 0, 0))
    rgb, area = edit_inputs(_png(img), None)
    assert rgb.mode == "RGB" and area.getpixel((0, 0)) == 255 and area.getpixel((1, 1)) == 0


def test_opaque_image_without_mask_is_image_to_image() -> None:
    _, area = edit_inputs(_png(Image.new("RGB", (4, 4))), None)
    assert area is None


def test_mask_errors() -> None:
    image = _png(Image.new("RGB", (4, 4)))
    with pytest.raises(InvalidRequestError, match="must match"):
        edit_inputs(image, _png(Image.new("RGBA", (5, 4))))
    with pytest.raises(InvalidRequestError, match="no area"):
        edit_inputs(image, _png(Image.new("RGBA", (4, 4), (0, 0, 0, 255))))


def test_sizes() -> None:
    assert parse_size("512x256") == (512, 256)
    assert parse_size("auto") is None and parse_size(None) is None
    for bad in ("512", "ax b", "512x", "-1x5"):
        with pytest.raises(InvalidRequestError):
            parse_size(bad)


def test_data_urls() -> None:
    payload = base64.b64encode(b"abc").decode()
    assert decode_data_url(f"data:image/png;base64,{payload}", "x") == b"abc"
    with pytest.raises(InvalidRequestError, match="data URL"):
        decode_data_url("https://example.com/cat.png", "x")
