"""OpenAI's video API: POST /v1/videos queues a job; GET polls it, lists, downloads; DELETE drops it.

Jobs run on the service's video queue whether or not a client polls (see video/jobs.py).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse

from ...imaging import parse_size
from . import blocking, read_upload, service_of

router = APIRouter(tags=["videos"])

Text = Annotated[str | None, Form()]


@router.post("/v1/videos")
async def create_video(
    request: Request,
    prompt: Annotated[str, Form()],
    model: Text = None,
    seconds: Text = None,
    size: Text = None,
    input_reference: Annotated[UploadFile | None, File()] = None,
) -> Any:
    jobs = await blocking(lambda: service_of(request).videos)
    image = await read_upload(request, input_reference, "input_reference", "the input reference") \
        if input_reference is not None else None
    job = await blocking(jobs.create, prompt, model, seconds, parse_size(size), image)
    return JSONResponse(job)


@router.get("/v1/videos")
async def list_videos(
    request: Request, limit: Annotated[int, Query(ge=1, le=100)] = 20, after: str | None = None,
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc",
) -> Any:
    videos = await blocking(lambda: service_of(request).videos)
    jobs = await blocking(videos.list, limit=limit + 1, after=after, order=order)
    page = jobs[:limit]
    return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None, "has_more": len(jobs) > limit}


@router.get("/v1/videos/{video_id}")
async def retrieve_video(video_id: str, request: Request) -> Any:
    videos = await blocking(lambda: service_of(request).videos)
    return videos.get(video_id)


@router.delete("/v1/videos/{video_id}")
async def delete_video(video_id: str, request: Request) -> Any:
    job = await blocking(lambda: service_of(request).videos.delete(video_id))
    return {"id": job["id"], "object": "video.deleted", "deleted": True}


@router.get("/v1/videos/{video_id}/content")
async def download_video(video_id: str, request: Request, variant: str = "video") -> Any:
    path, media_type = await blocking(lambda: service_of(request).videos.content(video_id, variant))
    return FileResponse(path, media_type=media_type, filename=f"{video_id}{path.suffix}")
