"""Video jobs through the official openai client: a tiny text-to-video model built here, and the
embedded storyboard (LLM scenes, house-model images, Piper narration, ffmpeg) end to end."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest
import yaml

from omniforge.video.assemble import probe
from tests.tinymodels import tiny_text_to_video

from .helpers import REQUEST_TIMEOUT_S, ServerProcess, assert_alive, assert_openai_error, start_server

# the openai client marks its video (Sora) methods deprecated; the API shape is what we serve
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def video_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("video-server")
    folder = tiny_text_to_video(root / "tiny-t2v")
    home = root / "home"
    home.mkdir()
    (home / "catalog.yaml").write_text(yaml.safe_dump({"models": [
        {"id": "tiny-t2v", "modality": "video", "backend": "diffusers-video", "source": str(folder),
         "options": {"steps": 2}},
    ]}))
    srv = start_server(root)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def vclient(video_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=video_server.base_url, api_key="unused", max_retries=0, timeout=REQUEST_TIMEOUT_S)


def _wait(client: openai.OpenAI, video_id: str, timeout: float = 300) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.videos.retrieve(video_id)
        if job.status in ("completed", "failed"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"video {video_id} did not finish in {timeout} s")


def test_tiny_text_to_video_job(vclient: openai.OpenAI, tmp_path) -> None:
    job = vclient.videos.create(model="tiny-t2v", prompt="a red cat walks", seconds="1", size="64x64")
    assert job.status in ("queued", "in_progress") and job.object == "video"
    done = _wait(vclient, job.id)
    assert done.status == "completed", done.error
    assert done.progress == 100
    content = vclient.videos.download_content(job.id)
    info = probe(content.content)
    assert info["video"] and (info["width"], info["height"]) == (64, 64)
    listed = vclient.videos.list()
    assert job.id in [v.id for v in listed.data]
    thumb = vclient.videos.download_content(job.id, variant="thumbnail")
    assert thumb.content[:2] == b"\xff\xd8"  # JPEG
    vclient.videos.delete(job.id)
    with pytest.raises(openai.NotFoundError):
        vclient.videos.retrieve(job.id)


def test_video_errors(video_server: ServerProcess) -> None:
    with httpx.Client(base_url=video_server.url, timeout=REQUEST_TIMEOUT_S) as http:
        r = http.post("/v1/videos", data={"prompt": "x", "model": "tiny-t2v", "size": "65x64"})
        assert_openai_error(r, 400, "invalid_request_error")
        r = http.post("/v1/videos", data={"prompt": "x", "model": "tiny-t2v", "seconds": "ten"})
        assert_openai_error(r, 400, "invalid_request_error")
        r = http.post("/v1/videos", data={"prompt": "x", "model": "gemma-3-270m"})
        assert_openai_error(r, 400, "invalid_request_error", "model_not_supported")
        r = http.get("/v1/videos/video_nope")
        assert_openai_error(r, 404, "invalid_request_error")
        assert_alive(http)


@pytest.mark.slow
def test_storyboard_video_survives_a_client_that_stops_polling(video_server: ServerProcess, tmp_path) -> None:
    """sora-2 resolves to the embedded storyboard; nobody polls until the job is done, and the
    finished MP4 has a video and a narration track of matching length."""
    client = openai.OpenAI(base_url=video_server.base_url, api_key="unused", max_retries=0, timeout=600)
    job = client.videos.create(model="sora-2", prompt="A red circle meets a blue square.", seconds="8",
                               size="256x256")
    job_file = video_server.home / "videos" / job.id / "job.json"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and '"completed"' not in job_file.read_text() \
            and '"failed"' not in job_file.read_text():
        time.sleep(1)  # read the job's own file: no HTTP polling at all
    done = client.videos.retrieve(job.id)
    assert done.status == "completed", done.error
    info = probe(client.videos.download_content(job.id).content)
    assert info["video"] and info["audio"], info
    assert (info["width"], info["height"]) == (256, 256)
    assert abs(info["duration"] - float(done.seconds)) <= 0.1 * float(done.seconds)
