"""The video job queue: runs without polling, fails with a reason, survives a restart, deletes."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import pytest

from omniforge.backends import register_backend
from omniforge.backends.base import VideoModel
from omniforge.catalog import ModelSpec
from omniforge.config import load_settings
from omniforge.errors import InvalidRequestError, NotFoundError
from omniforge.service import Service
from omniforge.types import VideoParams, VideoResult


class SlideModel(VideoModel):
    """A real, tiny video model: one solid colour per second, encoded by ffmpeg."""

    gate = threading.Event()

    def generate(self, params: VideoParams, progress: Any = None, context: Any = None) -> VideoResult:
        if "fail" in params.prompt:
            raise RuntimeError("the slide projector broke")
        if "wait" in params.prompt:
            self.gate.wait(timeout=20)
        w, h = params.width or 32, params.height or 32
        seconds = int(params.seconds or 1)
        frames = b"".join(bytes([40 * i % 256, 100, 200]) * (w * h) * 4 for i in range(seconds))
        for i in range(seconds):
            if progress:
                progress(i + 1, seconds)
        out = subprocess.run(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
             "-r", "4", "-i", "-", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "frag_keyframe+empty_moov",
             "-f", "mp4", "-"],
            input=frames, capture_output=True, check=True,
        )
        return VideoResult(out.stdout, w, h, float(seconds))


register_backend("test-slides", "video", lambda spec, settings: SlideModel(spec))


@pytest.fixture
def service(tmp_path: Path) -> Any:
    svc = Service(load_settings(home=tmp_path / "home"))
    svc.catalog.add(ModelSpec(id="slides", modality="video", backend="test-slides", source=str(tmp_path)))
    SlideModel.gate.clear()
    yield svc
    SlideModel.gate.set()
    svc.close()


def _wait(jobs: Any, job_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = jobs.get(job_id)
        if job["status"] in ("completed", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError("job did not finish")


def test_job_runs_to_completion_without_polling(service: Any) -> None:
    jobs = service.videos
    job = jobs.create("three slides", "slides", 3, (32, 32))
    assert job["status"] == "queued" and job["model"] == "slides"
    job_file = service.settings.home / "videos" / job["id"] / "job.json"
    deadline = time.monotonic() + 30
    while json.loads(job_file.read_text())["status"] != "completed" and time.monotonic() < deadline:
        time.sleep(0.05)
    done = jobs.get(job["id"])
    assert done["status"] == "completed" and done["progress"] == 100 and done["seconds"] == "3"
    path, media_type = jobs.content(job["id"])
    assert media_type == "video/mp4" and path.read_bytes()[4:8] == b"ftyp"


def test_failure_keeps_the_reason(service: Any) -> None:
    job = _wait(service.videos, service.videos.create("fail please", "slides")["id"])
    assert job["status"] == "failed"
    assert "slide projector broke" in job["error"]["message"]
    with pytest.raises(InvalidRequestError, match="failed"):
        service.videos.content(job["id"])


def test_restart_marks_cut_off_jobs_failed_and_keeps_finished_ones(tmp_path: Path, service: Any) -> None:
    done = _wait(service.videos, service.videos.create("one slide", "slides", 1)["id"])
    running = service.videos.create("wait for the gate", "slides", 1)
    time.sleep(0.3)
    service.videos.close()  # the server stops with a job in flight
    reopened = Service(load_settings(home=service.settings.home))
    try:
        cut = reopened.videos.get(running["id"])
        assert cut["status"] == "failed" and cut["error"]["code"] == "interrupted"
        assert reopened.videos.get(done["id"])["status"] == "completed"
        path, _ = reopened.videos.content(done["id"])
        assert path.stat().st_size > 0
    finally:
        SlideModel.gate.set()
        reopened.close()


def test_bad_requests_and_delete(service: Any) -> None:
    jobs = service.videos
    with pytest.raises(InvalidRequestError):
        jobs.create("", "slides")
    with pytest.raises(InvalidRequestError):
        jobs.create("x", "slides", "soon")
    with pytest.raises(InvalidRequestError):
        jobs.create("x", "slides", 4, (33, 32))
    with pytest.raises(InvalidRequestError):
        jobs.create("x", "slides", 4, None, b"not an image")
    job = _wait(jobs, jobs.create("x", "slides", 1)["id"])
    jobs.delete(job["id"])
    with pytest.raises(NotFoundError):
        jobs.get(job["id"])
    assert not (service.settings.home / "videos" / job["id"]).exists()
