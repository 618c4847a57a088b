"""Images through the official openai client: the embedded house model, and a user's Stable
Diffusion model (tiny, random, built here) loaded from a diffusers folder and from a single file."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import httpx
import numpy as np
import openai
import pytest
import yaml
from PIL import Image, ImageDraw

from tests.tinymodels import tiny_sd, tiny_sd_single_file

from .helpers import REQUEST_TIMEOUT_S, ServerProcess, assert_alive, assert_openai_error, start_server


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")


@pytest.fixture(scope="module")
def sd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose catalog holds a tiny SD folder and the same weights as one .safetensors file."""
    root = tmp_path_factory.mktemp("sd-server")
    folder = tiny_sd(root / "tiny-sd")
    single = tiny_sd_single_file(root / "tiny-sd.safetensors", folder)
    home = root / "home"
    home.mkdir()
    (home / "catalog.yaml").write_text(yaml.safe_dump({"models": [
        {"id": "tiny-sd", "modality": "image", "backend": "diffusers", "source": str(folder)},
        {"id": "tiny-sd-file", "modality": "image", "backend": "diffusers", "source": str(single),
         "options": {"config": str(folder)}},
    ]}))
    srv = start_server(root)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def sd_client(sd_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=sd_server.base_url, api_key="unused", max_retries=0, timeout=REQUEST_TIMEOUT_S)


# -- the embedded house model ------------------------------------------------------------------
def test_generation_b64_with_openai_name(client: openai.OpenAI) -> None:
    res = client.images.generate(model="dall-e-3", prompt="a large red circle at the left on a blue background",
                                 size="128x128", response_format="b64_json", extra_body={"seed": 3})
    img = _decode(res.data[0].b64_json)
    assert img.size == (128, 128)
    left, right = img.getpixel((20, 64)), img.getpixel((120, 64))
    assert left[0] > 150 and left[2] < 120, left  # red object on the left
    assert right[2] > 150 and right[0] < 120, right  # blue background on the right


def test_generation_url_and_n(client: openai.OpenAI, http: httpx.Client) -> None:
    res = client.images.generate(prompt="a small green square at the top on a white background", n=2,
                                 response_format="url", quality="low")
    assert len(res.data) == 2
    for item in res.data:
        got = http.get(item.url)
        assert got.status_code == 200 and got.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(got.content)).size == (256, 256)


def test_seed_reproduces_the_image(client: openai.OpenAI) -> None:
    kw = dict(prompt="a yellow triangle at the center on a black background", size="64x64",
              extra_body={"seed": 11, "steps": 8})
    a = client.images.generate(**kw).data[0].b64_json
    b = client.images.generate(**kw).data[0].b64_json
    # the same pixels (the files differ: each carries its own signed provenance manifest)
    assert _decode(a).tobytes() == _decode(b).tobytes() and a != b


def test_edit_with_mask_repaints_only_the_masked_half(client: openai.OpenAI) -> None:
    base = Image.new("RGB", (128, 128), (255, 255, 255))
    ImageDraw.Draw(base).ellipse((10, 40, 50, 80), fill=(255, 0, 0))
    mask = Image.new("RGBA", (128, 128), (0, 0, 0, 255))
    ImageDraw.Draw(mask).rectangle((64, 0, 127, 127), fill=(0, 0, 0, 0))  # transparent: repaint the right
    res = client.images.edit(image=("in.png", _png(base), "image/png"), mask=("mask.png", _png(mask), "image/png"),
                             prompt="a large blue square at the right on a white background",
                             extra_body={"seed": 5})
    out = _decode(res.data[0].b64_json)
    assert out.size == (128, 128)
    r, g, b = out.getpixel((30, 60))
    assert r > 180 and g < 100, (r, g, b)  # the unmasked red circle is kept


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the client marks variations (dall-e-2) deprecated
def test_variation(client: openai.OpenAI) -> None:
    base = Image.new("RGB", (64, 64), (0, 0, 0))
    ImageDraw.Draw(base).rectangle((20, 20, 44, 44), fill=(255, 255, 0))
    res = client.images.create_variation(image=("in.png", _png(base), "image/png"), n=1)
    assert _decode(res.data[0].b64_json).size == (64, 64)


def test_bad_image_requests_are_clear_400s(http: httpx.Client) -> None:
    r = http.post("/v1/images/generations", json={"prompt": "a red circle", "size": "100x50"})
    assert "size" in assert_openai_error(r, 400, "invalid_request_error")["message"]
    r = http.post("/v1/images/generations", json={"prompt": "a red circle", "size": "huge"})
    assert_openai_error(r, 400, "invalid_request_error")
    r = http.post("/v1/images/generations", json={"prompt": "a red circle", "n": 11})
    assert_openai_error(r, 400, "invalid_request_error")
    r = http.post("/v1/images/generations", json={"prompt": "a red circle", "model": "gemma-3-270m"})
    assert_openai_error(r, 400, "invalid_request_error", "model_not_supported")
    r = http.post("/v1/images/edits", data={"prompt": "x"}, files={"image": ("a.png", b"not an image", "image/png")})
    assert "readable image" in assert_openai_error(r, 400, "invalid_request_error")["message"]
    img = _png(Image.new("RGB", (64, 64)))
    small_mask = _png(Image.new("RGBA", (32, 32)))
    r = http.post("/v1/images/edits", data={"prompt": "a red circle"},
                  files={"image": ("a.png", img, "image/png"), "mask": ("m.png", small_mask, "image/png")})
    assert "must match" in assert_openai_error(r, 400, "invalid_request_error")["message"]
    assert_alive(http)


# -- a user's Stable Diffusion model ---------------------------------------------------------
@pytest.mark.parametrize("model", ["tiny-sd", "tiny-sd-file"])
def test_user_sd_model_folder_and_single_file(sd_client: openai.OpenAI, model: str) -> None:
    res = sd_client.images.generate(model=model, prompt="a photo of a red cat", size="64x64",
                                    extra_body={"seed": 1, "steps": 4})
    assert _decode(res.data[0].b64_json).size == (64, 64)


def test_folder_and_single_file_make_the_same_image(sd_client: openai.OpenAI) -> None:
    kw = dict(prompt="a green dog", size="64x64", extra_body={"seed": 2, "steps": 3})
    a = _decode(sd_client.images.generate(model="tiny-sd", **kw).data[0].b64_json)
    b = _decode(sd_client.images.generate(model="tiny-sd-file", **kw).data[0].b64_json)
    diff = np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max()
    assert diff <= 2


def test_user_sd_edit_and_limits(sd_server: ServerProcess, sd_client: openai.OpenAI) -> None:
    img = _png(Image.new("RGB", (64, 64), (200, 30, 30)))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 31, 63), fill=255)  # no alpha: white is repainted
    res = sd_client.images.edit(model="tiny-sd", image=("a.png", img, "image/png"),
                                mask=("m.png", _png(mask), "image/png"), prompt="a blue mat",
                                extra_body={"steps": 3, "seed": 0})
    assert _decode(res.data[0].b64_json).size == (64, 64)
    with httpx.Client(base_url=sd_server.url, timeout=REQUEST_TIMEOUT_S) as http:
        long_prompt = " ".join(["red cat"] * 60)
        r = http.post("/v1/images/generations", json={"model": "tiny-sd", "prompt": long_prompt, "size": "64x64"})
        err = assert_openai_error(r, 400, "invalid_request_error", "prompt_too_long")
        assert "77" in err["message"]
        r = http.post("/v1/images/generations", json={"model": "tiny-sd", "prompt": "a cat", "size": "60x64"})
        assert_openai_error(r, 400, "invalid_request_error")
        r = http.post("/v1/images/generations",
                      json={"model": "tiny-sd", "prompt": "a cat", "size": "64x64", "scheduler": "NoSuchScheduler"})
        assert_openai_error(r, 400, "invalid_request_error")
        assert_alive(http)


def test_image_files_need_a_valid_name(http: httpx.Client) -> None:
    assert http.get("/v1/images/files/..%2Fcatalog.yaml").status_code == 404
    assert http.get("/v1/images/files/img_000000000000000000000000.png").status_code == 404
