"""Chat with image_url and input_audio parts and spoken answers, through the official openai client.

The embedded chat model cannot see or hear: the vision model's findings and the transcript reach
it as text, so the prompt grows by what they found. Spoken answers come back as base64 audio
whose transcript is the answer's text.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import httpx
import openai
import pytest
import yaml
from PIL import Image, ImageDraw, ImageFont

from tests.tiny_vlm import IMAGE_TOKENS, tiny_vlm

from .helpers import (
    REQUEST_TIMEOUT_S,
    assert_alive,
    assert_openai_error,
    decode_audio,
    start_server,
    word_error_rate,
)


def _data_url(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _sign(text: str) -> Image.Image:
    img = Image.new("RGB", (360, 120), (255, 255, 255))
    ImageDraw.Draw(img).text((20, 30), text, fill=(0, 0, 0), font=ImageFont.load_default(size=48))
    return img


def _ask(client: openai.OpenAI, parts: list[dict]) -> openai.types.chat.ChatCompletion:
    return client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": parts}], max_tokens=24, temperature=0, seed=1
    )


def test_image_part_reaches_the_model_as_what_the_vision_model_found(client: openai.OpenAI) -> None:
    question = {"type": "text", "text": "What does the sign say?"}
    plain = _ask(client, [question])
    seen = _ask(client, [{"type": "image_url", "image_url": {"url": _data_url(_sign("OPEN"))}}, question])
    assert seen.choices[0].message.content
    # the OCR text, size and colours went into the prompt
    assert seen.usage.prompt_tokens > plain.usage.prompt_tokens + 10


def test_input_audio_part_is_heard(client: openai.OpenAI) -> None:
    speech = client.audio.speech.create(model="tts-1", voice="alloy", input="Please say hello.", response_format="wav")
    part = {"type": "input_audio", "input_audio": {"data": base64.b64encode(speech.content).decode(), "format": "wav"}}
    plain = _ask(client, [{"type": "text", "text": "Answer:"}])
    heard = _ask(client, [part, {"type": "text", "text": "Answer:"}])
    assert heard.usage.prompt_tokens > plain.usage.prompt_tokens + 3


def test_spoken_answer(client: openai.OpenAI) -> None:
    res = client.chat.completions.create(
        model="gpt-4o-audio-preview", modalities=["text", "audio"], audio={"voice": "alloy", "format": "wav"},
        messages=[{"role": "user", "content": "Name a colour."}], max_tokens=12, temperature=0, seed=2,
    )
    audio = res.choices[0].message.audio
    assert res.choices[0].message.content is None
    assert audio.transcript.strip()
    samples = decode_audio(base64.b64decode(audio.data), "wav")
    assert len(samples) > 24000 * 0.3  # at least a third of a second of speech


def test_spoken_answer_transcribes_back(client: openai.OpenAI) -> None:
    res = client.chat.completions.create(
        model="gpt-4o-mini", modalities=["text", "audio"], audio={"voice": "alloy", "format": "mp3"},
        messages=[{"role": "user", "content": "Say: the weather is nice today."}], max_tokens=16, temperature=0,
    )
    audio = res.choices[0].message.audio
    heard = client.audio.transcriptions.create(model="whisper-1", file=("a.mp3", base64.b64decode(audio.data)))
    assert word_error_rate(audio.transcript, heard.text) <= 0.35


def test_streamed_spoken_answer(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini", modalities=["text", "audio"], audio={"voice": "alloy", "format": "pcm16"}, stream=True,
        messages=[{"role": "user", "content": "Name a colour."}], max_tokens=8, temperature=0,
    )
    transcript, pcm, finish = [], b"", None
    for chunk in stream:
        delta = chunk.choices[0].delta
        audio = delta.audio
        if audio:
            transcript.append(audio.transcript or "")
            pcm += base64.b64decode(audio.data or "")
        finish = chunk.choices[0].finish_reason or finish
    assert "".join(transcript).strip() and finish in ("stop", "length")
    assert len(pcm) > 2 * 24000 * 0.3  # 16-bit samples at 24 kHz: a third of a second at least


def test_multimodal_errors(http: httpx.Client) -> None:
    def chat(**body: object) -> httpx.Response:
        return http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], **body})

    bad_url = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}]}]
    r = http.post("/v1/chat/completions", json={"messages": bad_url})
    assert assert_openai_error(r, 400, "invalid_request_error")["code"] == "remote_urls_disabled"  # off by default
    junk = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]
    r = http.post("/v1/chat/completions", json={"messages": junk})
    assert "readable image" in assert_openai_error(r, 400, "invalid_request_error")["message"]
    r = chat(modalities=["text", "audio"])
    assert_openai_error(r, 400, "invalid_request_error")
    r = chat(modalities=["text", "audio"], audio={"voice": "alloy", "format": "ogg"})
    assert_openai_error(r, 400, "invalid_request_error")
    r = chat(modalities=["text", "audio"], audio={"voice": "alloy", "format": "wav"}, stream=True)
    assert "pcm16" in assert_openai_error(r, 400, "invalid_request_error")["message"]
    assert_alive(http)


# -- a user's vision-language model: it gets the pixels ----------------------------------------
@pytest.fixture(scope="module")
def vlm_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    root = tmp_path_factory.mktemp("vlm-server")
    folder = tiny_vlm(root / "llava")
    home = root / "home"
    home.mkdir()
    (home / "catalog.yaml").write_text(yaml.safe_dump({"models": [
        {"id": "tiny-llava", "modality": "text", "backend": "transformers-vlm", "source": str(folder)},
    ]}))
    srv = start_server(root)
    yield openai.OpenAI(base_url=srv.base_url, api_key="unused", max_retries=0, timeout=REQUEST_TIMEOUT_S)
    srv.stop()


@pytest.mark.slow
def test_a_vision_language_model_sees_the_image(vlm_client: openai.OpenAI) -> None:
    red = Image.new("RGB", (32, 32), (255, 0, 0))
    parts = [{"type": "image_url", "image_url": {"url": _data_url(red)}}, {"type": "text", "text": "describe"}]
    seen = vlm_client.chat.completions.create(model="tiny-llava", messages=[{"role": "user", "content": parts}],
                                              max_tokens=3, temperature=0)
    plain = vlm_client.chat.completions.create(model="tiny-llava", messages=[{"role": "user", "content": "describe"}],
                                               max_tokens=3, temperature=0)
    assert seen.usage.prompt_tokens >= plain.usage.prompt_tokens + IMAGE_TOKENS - 1
    assert seen.choices[0].finish_reason in ("stop", "length")
