"""Images and audio in chat through the Service: a model that sees gets the pixels, one that does
not gets what the vision model measured; speech becomes its transcript. Real models: the tiny
Llava built here, image-facts (RapidOCR) and whisper-tiny.en."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from omniforge.catalog import ModelSpec
from omniforge.config import load_settings
from omniforge.service import Service
from omniforge.types import GenerationParams, Message
from tests.tiny_vlm import IMAGE_TOKENS, tiny_vlm


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _sign(text: str) -> bytes:
    img = Image.new("RGB", (360, 120), (255, 255, 255))
    ImageDraw.Draw(img).text((20, 30), text, fill=(0, 0, 0), font=ImageFont.load_default(size=48))
    return _png(img)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Service:
    root = tmp_path_factory.mktemp("multimodal")
    svc = Service(load_settings(home=root / "home", threads=1))
    svc.catalog.add(ModelSpec(id="tiny-llava", modality="text", backend="transformers-vlm",
                              source=str(tiny_vlm(root / "llava"))))
    yield svc
    svc.close()


def test_a_model_that_cannot_see_reads_the_facts(service: Service) -> None:
    seen, images = service._see([Message("user", "What does it say?", images=[_sign("OPEN")])], False)
    assert images == []
    text = seen[0].content
    assert text.startswith("[Image 1:") and "OPEN" in text and "What does it say?" in text


@pytest.mark.slow
def test_a_model_that_sees_gets_the_image(service: Service) -> None:
    params = GenerationParams(max_tokens=3, temperature=0)
    red = _png(Image.new("RGB", (32, 32), (255, 0, 0)))
    with_image = service.chat([Message("user", "describe this picture", images=[red])], "tiny-llava", params)[0]
    without = service.chat([Message("user", "describe this picture")], "tiny-llava", params)[0]
    assert with_image.usage.prompt_tokens >= without.usage.prompt_tokens + IMAGE_TOKENS - 1


def test_describe_with_the_embedded_models(service: Service) -> None:
    result = service.describe(_sign("SALE"))
    assert result.text.strip()
    assert result.usage.prompt_tokens > 20


def test_audio_becomes_its_transcript(service: Service) -> None:
    _, _, stream = service.speak("The meeting starts at nine in the morning.", fmt="wav")
    from omniforge.audio.codec import finish_wav

    wav = finish_wav(b"".join(stream))
    heard = service._hear([Message("user", "", audio=[wav])])
    assert "meeting" in heard[0].content.lower() and heard[0].audio == []


def test_unreadable_attachment_is_a_clear_error(service: Service, tmp_path: Path) -> None:
    from omniforge.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError, match="readable image"):
        service.chat([Message("user", "hi", images=[b"junk"])], params=GenerationParams(max_tokens=2))
