"""Every way a generated file leaves omniforge carries provenance: an image from the server, speech from
the CLI and a pipeline, a video from the Service, each verifying with a valid C2PA manifest naming its model."""

from __future__ import annotations

import base64
from pathlib import Path

import openai
import pytest
from typer.testing import CliRunner

from omniforge.cli.main import app
from omniforge.config import load_settings
from omniforge.governance.provenance import verify
from omniforge.service import Service
from omniforge.types import VideoParams
from tests.server.helpers import REQUEST_TIMEOUT_S, start_server


def _assert_labelled(data: bytes, media_type: str, model: str, settings) -> dict:
    report = verify(data, media_type, settings)
    assert report["manifest"] and report["valid"], report
    assert report["model"] == model and report["ai_generated"], report
    assert "trainedAlgorithmicMedia" in report["digital_source_type"]
    return report


@pytest.mark.slow
def test_an_image_from_the_server_is_signed_and_watermarked(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=REQUEST_TIMEOUT_S)
        result = client.images.generate(model="dall-e-3", prompt="a red circle on a blue background", size="512x512",
                                        response_format="b64_json")
        png = base64.b64decode(result.data[0].b64_json)
    finally:
        server.stop()
    report = _assert_labelled(png, "image/png", "house-image", load_settings(home=server.home))
    assert report["trusted"]  # signed by this home's own CA, made on first use
    assert report["watermark"]["found"] and report["watermark"]["model_match"]


@pytest.mark.slow
def test_speech_and_video_carry_manifests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("OMNIFORGE_HOME", str(home))
    settings = load_settings(home=home, threads=1)
    out = tmp_path / "hello.wav"
    result = CliRunner().invoke(app, ["speak", "Hello from omniforge.", "-o", str(out)])
    assert result.exit_code == 0, result.output
    _assert_labelled(out.read_bytes(), "audio/wav", "piper-en-us-joe", settings)

    service = Service(settings)
    try:
        _, video = service.generate_video(VideoParams(prompt="A red ball rolls across a green field.", seconds=4))
    finally:
        service.close()
    report = _assert_labelled(video.mp4, "video/mp4", "storyboard", settings)
    assert report["watermark"] is None  # only images carry the pixel watermark
    unsigned = load_settings(home=tmp_path / "other", provenance=False)
    assert Service(unsigned).label(b"RIFF....WAVE", "audio/wav", "x") == b"RIFF....WAVE"  # the setting turns it off


@pytest.mark.slow
def test_watermarked_text_from_the_server_verifies_by_cli_and_api(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A completion asked with watermark=true carries the green-list mark; `omniforge verify` and
    POST /v1/verify find it (z >= 4) with the vocabulary only, and not in an unmarked one."""
    from fastapi.testclient import TestClient

    from omniforge.server import create_app

    monkeypatch.setenv("OMNIFORGE_TEXTMARK_KEY", "provenance-paths-test")  # fixed key: a repeatable outcome
    service = Service(load_settings(threads=1))
    with TestClient(create_app(service), raise_server_exceptions=False) as http:
        client = openai.OpenAI(base_url="http://testserver/v1", api_key="none", http_client=http, max_retries=0)
        replies = {marked: client.completions.create(
            model="gemma-3-270m", prompt="The history of the bicycle began in", max_tokens=120, temperature=0.8,
            seed=7, extra_body={"watermark": marked}).choices[0].text for marked in (True, False)}
        api = http.post("/v1/verify", files={"file": ("reply.txt", replies[True].encode(), "text/plain")}).json()
    service.close()
    assert api["text_watermark"]["watermarked"] and api["model"] == "gemma-3-270m", api
    for marked, text in replies.items():
        f = tmp_path / f"reply-{marked}.txt"
        f.write_text(text)
        result = CliRunner().invoke(app, ["verify", str(f)])
        assert result.exit_code == 0, result.output
        assert result.output.startswith("text watermark: found" if marked else "text watermark: not found"), \
            (result.output, text)
