"""Video jobs: OpenAI's asynchronous video API (create, poll, download) on a worker thread.

A job is a folder under `home/videos/<id>/`: `job.json` (written atomically at every change) and,
once finished, `video.mp4`. Jobs run one at a time in the order they came, whether or not anyone
polls; at most `max_queue` wait. A job that a server stop cut off is marked failed with that
reason when the queue is opened again; a finished video stays downloadable until it expires (a
week after it finished) or is deleted.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequestError, ModelLoadError, NotFoundError, OmniforgeError, OverloadedError
from ..storage import write_atomic
from ..types import VideoParams

if TYPE_CHECKING:
    from ..service import Service

log = logging.getLogger("omniforge.video")

EXPIRY_S = 7 * 24 * 3600
MAX_SIDE = 1920
MIN_SIDE = 32
DEFAULT_SECONDS = 4.0
_PROGRESS_EVERY_S = 0.5


class VideoJobs:
    def __init__(self, service: Service, root: Path) -> None:
        self.service = service
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._jobs: dict[str, dict[str, Any]] = {}
        self._cancelled: set[str] = set()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="omniforge-video")
        self._reopen()

    # -- store -------------------------------------------------------------------------------
    def _reopen(self) -> None:
        for path in sorted(self.root.glob("*/job.json")):
            try:
                job = json.loads(path.read_text())
                if not isinstance(job, dict) or job.get("id") != path.parent.name or "status" not in job:
                    raise ValueError("not a video job")
            except (OSError, ValueError) as exc:
                log.warning("skipping unreadable video job %s: %s", path, exc)
                continue
            if job.get("status") in ("queued", "in_progress"):
                job.update(status="failed", error={
                    "code": "interrupted",
                    "message": "the server stopped before this video was finished; create it again",
                })
                self._write(job)
            self._jobs[job["id"]] = job
        self._purge_expired()

    def _purge_expired(self) -> None:
        """Drop finished videos past their expires_at (a week after they finished)."""
        now = time.time()
        with self._lock:
            expired = [j for j, job in self._jobs.items() if job.get("expires_at") and job["expires_at"] < now]
            for job_id in expired:
                self._jobs.pop(job_id)
        for job_id in expired:
            shutil.rmtree(self.root / job_id, ignore_errors=True)
            log.info("video %s expired and was removed", job_id)

    def _write(self, job: dict[str, Any]) -> None:
        folder = self.root / job["id"]
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / "job.json", json.dumps(job, indent=1).encode())

    def close(self) -> None:
        with self._lock:
            self._cancelled.update(j for j, job in self._jobs.items() if job["status"] in ("queued", "in_progress"))
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- API ---------------------------------------------------------------------------------
    def create(self, prompt: str, model: str | None = None, seconds: float | str | None = None,
               size: tuple[int, int] | None = None, image: bytes | None = None) -> dict[str, Any]:
        """Validate, queue and return the job (status "queued")."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidRequestError("prompt must be non-empty text", param="prompt")
        spec = self.service.pick(model, "video")
        self._purge_expired()
        with self._lock:
            waiting = sum(job["status"] in ("queued", "in_progress") for job in self._jobs.values())
        if waiting >= self.service.settings.max_queue:
            raise OverloadedError(
                f"{waiting} videos are queued or being made (max_queue); try again later", retry_after=30
            )
        try:
            secs = DEFAULT_SECONDS if seconds in (None, "") else float(seconds)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise InvalidRequestError(f"seconds must be a number, not {seconds!r}", param="seconds") from None
        if not 1 <= secs <= 60:
            raise InvalidRequestError("seconds must be between 1 and 60", param="seconds")
        if size is not None:
            w, h = size
            if not (MIN_SIDE <= w <= MAX_SIDE and MIN_SIDE <= h <= MAX_SIDE) or w % 2 or h % 2:
                raise InvalidRequestError(
                    f"size {w}x{h}: width and height must be even and between {MIN_SIDE} and {MAX_SIDE}",
                    param="size",
                )
        first_frame = None
        if image is not None:
            from ..imaging import decode_image

            first_frame = decode_image(image, "input_reference")
        job_id = f"video_{secrets.token_hex(12)}"
        job: dict[str, Any] = {
            "id": job_id, "object": "video", "model": spec.id, "status": "queued", "progress": 0,
            "created_at": int(time.time()), "completed_at": None, "expires_at": None,
            "prompt": prompt, "seconds": f"{secs:g}", "size": f"{size[0]}x{size[1]}" if size else "auto",
            "error": None,
        }
        params = VideoParams(prompt=prompt, seconds=secs, width=size[0] if size else None,
                             height=size[1] if size else None, image=first_frame)
        with self._lock:
            self._jobs[job_id] = job
            self._write(job)
            created = dict(job)
        self._pool.submit(self._run, job_id, spec.id, params)
        return created

    def get(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise NotFoundError(f"no video with id '{job_id}'", param="video_id")
            return dict(job)

    def list(self, limit: int = 20, after: str | None = None, order: str = "desc") -> list[dict[str, Any]]:
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda j: (j["created_at"], j["id"]), reverse=order == "desc")
        if after:
            ids = [j["id"] for j in jobs]
            jobs = jobs[ids.index(after) + 1:] if after in ids else []
        return [dict(j) for j in jobs[:limit]]

    def delete(self, job_id: str) -> dict[str, Any]:
        job = self.get(job_id)
        with self._lock:  # under the lock: a finishing job either sees the cancel or is removed after
            self._cancelled.add(job_id)
            self._jobs.pop(job_id, None)
            shutil.rmtree(self.root / job_id, ignore_errors=True)
        return job

    def content(self, job_id: str, variant: str = "video") -> tuple[Path, str]:
        """(file, content type) of a finished job's video or its thumbnail."""
        job = self.get(job_id)
        if job["status"] != "completed":
            raise InvalidRequestError(
                f"video '{job_id}' is {job['status']}; its content is ready once status is completed",
                param="video_id",
            )
        video = self.root / job_id / "video.mp4"
        if not video.is_file():
            raise NotFoundError(f"the video file of '{job_id}' is gone", param="video_id")
        if variant == "video":
            return video, "video/mp4"
        if variant == "thumbnail":
            thumb = self.root / job_id / "thumbnail.jpg"
            if not thumb.exists():
                _thumbnail(video, thumb)
            return thumb, "image/jpeg"
        raise InvalidRequestError("variant must be video or thumbnail", param="variant")

    # -- worker ------------------------------------------------------------------------------
    def _update(self, job_id: str, **fields: Any) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:  # deleted meanwhile
                return
            job.update(fields)
            self._write(job)

    def _run(self, job_id: str, model: str, params: VideoParams) -> None:
        if job_id in self._cancelled:
            return
        self._update(job_id, status="in_progress")
        last = [0.0]

        def progress(done: int, total: int) -> None:
            if job_id in self._cancelled:
                raise InterruptedError("video job cancelled")
            now = time.monotonic()
            if now - last[0] >= _PROGRESS_EVERY_S or done >= total:
                last[0] = now
                self._update(job_id, progress=min(99, int(100 * done / max(total, 1))))

        try:
            _, result = self.service.generate_video(params, model, progress)
            with self._lock:  # a delete is either before this (nothing written) or after it (all removed)
                if job_id in self._cancelled:
                    return
                write_atomic(self.root / job_id / "video.mp4", result.mp4)
            finished = int(time.time())
            self._update(job_id, status="completed", progress=100, completed_at=finished,
                         expires_at=finished + EXPIRY_S, size=f"{result.width}x{result.height}",
                         seconds=f"{result.seconds:.2f}".rstrip("0").rstrip("."))
            log.info("video %s finished: %dx%d, %.1f s", job_id, result.width, result.height, result.seconds)
        except InterruptedError:
            log.info("video %s cancelled", job_id)
        except Exception as exc:  # a job fails with its reason; the server stays up
            reason = str(exc) if isinstance(exc, OmniforgeError) else f"{type(exc).__name__}: {exc}"
            code = getattr(exc, "code", None) or "generation_failed"
            log.warning("video %s failed: %s", job_id, reason, exc_info=not isinstance(exc, OmniforgeError))
            self._update(job_id, status="failed", error={"code": code, "message": reason})
        finally:
            with self._lock:
                self._cancelled.discard(job_id)


def _thumbnail(video: Path, target: Path) -> None:
    import os
    import subprocess
    import tempfile

    from ..audio.codec import ffmpeg_exe

    fd, tmp = tempfile.mkstemp(prefix=".thumbnail.", suffix=".jpg", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(video), "-frames:v", "1", tmp],
                       check=True, capture_output=True)
        os.replace(tmp, target)
    except (subprocess.CalledProcessError, OSError) as exc:
        raise ModelLoadError(f"could not make a thumbnail of {video.parent.name}: {exc}") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
