"""`omniforge image`, `edit`, `video` and `describe`: make images and videos, and say what an image shows."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from ..errors import InvalidRequestError
from ..imaging import parse_size
from ..types import ImageParams
from .state import save, state, write_out

SUFFIX_FORMATS = {"png": "png", "jpg": "jpeg", "jpeg": "jpeg", "webp": "webp"}

Model = Annotated[str | None, typer.Option("--model", "-m", help="Model id, alias or OpenAI name.", show_default=False)]
Size = Annotated[str | None, typer.Option("--size", "-s", help="WIDTHxHEIGHT (default: the model's).", show_default=False)]
Steps = Annotated[int | None, typer.Option(help="Denoising steps (default: the model's).", show_default=False)]
Seed = Annotated[int | None, typer.Option(help="Seed for a reproducible image.", show_default=False)]
N = Annotated[int, typer.Option("-n", help="How many images (files get -1, -2, ... suffixes).")]
Guidance = Annotated[float | None, typer.Option(help="Classifier-free guidance scale.", show_default=False)]
Negative = Annotated[str | None, typer.Option("--negative", help="Negative prompt.", show_default=False)]
Scheduler = Annotated[str | None, typer.Option(help="Scheduler class name (diffusers models).", show_default=False)]
Output = Annotated[Path, typer.Option("--output", "-o", help="Image file to write (.png, .jpg, .webp).")]


def _image_format(output: Path) -> str:
    suffix = output.suffix.lstrip(".").lower()
    if suffix not in SUFFIX_FORMATS:
        raise InvalidRequestError(
            f"cannot tell the image format from '{output.name}'; use .png, .jpg or .webp", param="output"
        )
    return SUFFIX_FORMATS[suffix]


def _outputs(output: Path, n: int) -> list[Path]:
    if n == 1:
        return [output]
    return [output.with_name(f"{output.stem}-{i + 1}{output.suffix}") for i in range(n)]


def _save_images(ctx: typer.Context, model_id: str, prompt: str, images: list, output: Path, seed: int,
                 started: float) -> None:
    fmt = _image_format(output)
    paths = _outputs(output, len(images))
    # all encoded (and labelled) before any is written
    encoded = [state(ctx).service.encode_image(img, fmt, model_id, prompt) for img in images]
    for path, data in zip(paths, encoded):
        save(path, data)
    st = state(ctx)
    size = f"{images[0].width}x{images[0].height}"
    st.progress.note(f"wrote {', '.join(map(str, paths))} ({size}, seed {seed}, {time.perf_counter() - started:.1f} s)")


def image(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="What to draw.")],
    output: Output = Path("image.png"),
    model: Model = None, size: Size = None, steps: Steps = None, seed: Seed = None, n: N = 1,
    guidance: Guidance = None, negative: Negative = None, scheduler: Scheduler = None,
) -> None:
    """Make an image from a text prompt."""
    _image_format(output)
    st = state(ctx)
    wh = parse_size(size)
    params = ImageParams(prompt=prompt, width=wh and wh[0], height=wh and wh[1], steps=steps, seed=seed, n=n,
                         guidance=guidance, negative_prompt=negative, scheduler=scheduler)
    started = time.perf_counter()
    spec = st.service.pick(model, "image")
    with st.progress.steps(f"drawing with {spec.id}") as progress:
        _, result = st.service.generate_image(params, spec.id, progress)
    _save_images(ctx, spec.id, prompt, result.images, output, result.seed, started)


def edit(
    ctx: typer.Context,
    image_file: Annotated[Path, typer.Argument(help="The image to edit.", exists=True, dir_okay=False)],
    prompt: Annotated[str, typer.Argument(help="What the edited image should show.")],
    output: Output = Path("edited.png"),
    mask: Annotated[
        Path | None,
        typer.Option(help="Mask: transparent (or, without alpha, white) pixels are repainted.", exists=True,
                     dir_okay=False, show_default=False),
    ] = None,
    strength: Annotated[float, typer.Option(help="How much to change, 0-1 (image-to-image and inpainting).")] = 0.8,
    model: Model = None, size: Size = None, steps: Steps = None, seed: Seed = None, n: N = 1,
    guidance: Guidance = None, negative: Negative = None,
) -> None:
    """Edit an image: repaint a masked area, or redraw the whole image after a prompt."""
    _image_format(output)
    st = state(ctx)
    wh = parse_size(size)
    options = dict(width=wh and wh[0], height=wh and wh[1], steps=steps, seed=seed, n=n, guidance=guidance,
                   negative_prompt=negative, strength=strength)
    started = time.perf_counter()
    spec = st.service.pick(model, "image")
    with st.progress.steps(f"editing with {spec.id}") as progress:
        _, result = st.service.edit_image(
            image_file.read_bytes(), prompt, mask.read_bytes() if mask else None, spec.id, progress, **options
        )
    _save_images(ctx, spec.id, prompt, result.images, output, result.seed, started)


def video(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="What the video is about.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="MP4 file to write.")] = Path("video.mp4"),
    model: Model = None,
    seconds: Annotated[float, typer.Option(help="Wanted duration in seconds.")] = 8.0,
    size: Size = None,
    image_file: Annotated[
        Path | None, typer.Option("--image", help="First frame (image-to-video models).", exists=True,
                                  dir_okay=False, show_default=False),
    ] = None,
) -> None:
    """Make a video (MP4) from a prompt: a storyboard with narration by default."""
    if output.suffix.lower() != ".mp4":
        raise InvalidRequestError(f"the video is an MP4: name the output *.mp4, not '{output.name}'", param="output")
    st = state(ctx)
    jobs = st.service.videos
    started = time.perf_counter()
    job = jobs.create(prompt, model, seconds, parse_size(size), image_file.read_bytes() if image_file else None)
    try:
        with st.progress.steps(f"making a video with {job['model']}") as progress:
            while job["status"] in ("queued", "in_progress"):
                time.sleep(0.5)
                job = jobs.get(job["id"])
                progress(job["progress"], 100)
        if job["status"] == "failed":
            raise InvalidRequestError(f"the video failed: {job['error']['message']}")
        path, _ = jobs.content(job["id"])
        save(output, path.read_bytes())
    finally:
        jobs.delete(job["id"])  # the file is the user's now (or the job failed): nothing stays in home
    st.progress.note(
        f"wrote {output} ({job['size']}, {job['seconds']} s, made in {time.perf_counter() - started:.0f} s)"
    )


def describe(
    ctx: typer.Context,
    image_file: Annotated[Path, typer.Argument(help="The image to describe.", exists=True, dir_okay=False)],
    prompt: Annotated[str | None, typer.Option(help="What to ask about the image.", show_default=False)] = None,
    model: Model = None,
    facts: Annotated[bool, typer.Option("--facts", help="Print what the vision model measured, too.")] = False,
) -> None:
    """Say what an image shows: the vision model analyses, the chat model describes."""
    st = state(ctx)
    data = image_file.read_bytes()
    if facts:
        with st.progress.working("analysing the image"):
            write_out(st.service.analyse(data) + "\n")
    with st.progress.working("describing the image"):
        result = st.service.describe(data, model, prompt)
    write_out(result.text.strip() + "\n")
