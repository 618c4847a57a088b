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
