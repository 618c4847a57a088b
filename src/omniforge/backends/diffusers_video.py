"""diffusers video backend: a user's text-to-video or image-to-video pipeline from a local
diffusers folder (TextToVideoSD, AnimateDiff, CogVideoX, LTX, Wan, StableVideoDiffusion, their
image-to-video variants, whatever DiffusionPipeline loads and takes `num_frames`), encoded to MP4.

Frames become H.264 (yuv420p, even sizes) through the ffmpeg that imageio-ffmpeg bundles, so no
system ffmpeg is needed. Nothing is fetched from a hub (local_files_only=True).

spec.options (all optional; device, dtype, variant, attention_slicing, vae_tiling and
cpu_offload as for the diffusers image backend):
    pipeline        pipeline class when the folder's own is not the one to run, e.g.
                    "AnimateDiffPipeline" over a Stable Diffusion folder
    motion_adapter  AnimateDiff: local MotionAdapter folder (unless the folder holds one)
    fps             frames per second of the output (default: the pipeline's, else 8)
    steps, guidance this model's defaults
    max_seconds     the longest video accepted (default: twice the pipeline's default length)
"""

from __future__ import annotations

import inspect
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import InvalidRequestError, MissingDependencyError, ModelLoadError, OmniforgeError
from ..types import ProgressFn, VideoParams, VideoResult
from .base import VideoModel
from .diffusers_image import (
    call_parameters,
    check_options,
    generators,
    pick_dtype,
    pipeline_memory,
    place,
    random_seed,
    read_model_index,
    run_pipeline,
    step_callbacks,
)

if TYPE_CHECKING:
    from ..catalog.spec import ModelSpec
    from ..config import Settings

ENCODE_TIMEOUT_S = 600.0
_IMAGE_ONLY = ("StableVideoDiffusion", "ImageToVideo", "I2V")  # class names that need a first frame


class DiffusersVideo(VideoModel):
    """One diffusers video pipeline. Lengths are whole frames: seconds * fps rounded to a count
    the pipeline accepts (CogVideoX, LTX, Wan: k * n + 1 for their VAE's temporal factor k)."""

    def __init__(self, spec: ModelSpec, pipe: Any, device: str) -> None:
        super().__init__(spec)
        self.device = device
        self._pipe: Any = pipe
        self._params = call_parameters(pipe)
        name = type(pipe).__name__
        # These depend on the pipeline, so they are set per instance.
        self.supports_image_to_video = "image" in self._params  # type: ignore[misc]
        self.requires_image = any(part in name for part in _IMAGE_ONLY) or (
            "image" in self._params and self._params["image"].default is inspect.Parameter.empty)
        self.size_multiple, self.default_size = _sizes(pipe, self._params)
        self.temporal_factor = _temporal_factor(pipe)
        self.fps = int(spec.options.get("fps") or _default(self._params, "fps", "frame_rate") or 8)
        frames = _default(self._params, "num_frames") or _unet_frames(pipe) or 16
        self.default_frames = self.frames_for(frames)
        self.max_seconds = float(spec.options.get("max_seconds", 2 * self.default_frames / self.fps))
        self.default_steps = int(spec.options.get("steps", 25))
        self._default_guidance = spec.options.get("guidance")

    @property
    def pipe(self) -> Any:
        if self._pipe is None:
            raise ModelLoadError(f"model {self.spec.id} was unloaded")
        return self._pipe

    def memory_bytes(self) -> int:
        return pipeline_memory(self._pipe) if self._pipe is not None else 0

    def frames_for(self, wanted: float) -> int:
        """The frame count nearest `wanted` that the pipeline accepts."""
        k = self.temporal_factor
        if k > 1:
            return max(1, round((wanted - 1) / k)) * k + 1
        return max(2, round(wanted))

    def generate(self, params: VideoParams, progress: ProgressFn | None = None, context: Any = None) -> VideoResult:
        pipe, call = self.pipe, self._params
        fps = int(params.fps or self.fps)
        if fps <= 0:
            raise InvalidRequestError(f"fps must be positive, not {fps}", param="fps")
        seconds = params.seconds if params.seconds is not None else self.default_frames / fps
        if not 0 < seconds <= self.max_seconds:
            raise InvalidRequestError(f"seconds must be in (0, {self.max_seconds:g}] for model {self.spec.id}, "
                                      f"not {seconds:g}", param="seconds")
        frames = self.frames_for(seconds * fps)
        width, height = self._size(params)
        steps = params.steps or self.default_steps
        seed = params.seed if params.seed is not None else random_seed()
        kwargs: dict[str, Any] = {"num_frames": frames, "num_inference_steps": steps, "output_type": "np",
                                  "generator": generators(seed, 1)[0], "height": height, "width": width}
        kwargs |= self._conditioning(params, width, height)
        for name in ("fps", "frame_rate"):
            if name in call:
                kwargs[name] = fps
        guidance = params.guidance if params.guidance is not None else self._default_guidance
        if guidance is not None and "guidance_scale" in call:
            kwargs["guidance_scale"] = float(guidance)
        kwargs |= step_callbacks(pipe, call, steps, progress)
        kwargs = {k: v for k, v in kwargs.items() if k in call or k.startswith("callback")}
        video = _as_uint8(run_pipeline(pipe, self.spec, kwargs).frames)
        mp4 = encode_mp4(video, fps)
        h, w = video.shape[1:3]
        return VideoResult(mp4=mp4, width=w + w % 2, height=h + h % 2, seconds=len(video) / fps)

    def _conditioning(self, params: VideoParams, width: int, height: int) -> dict[str, Any]:
        """prompt, negative_prompt and the first frame, as far as the pipeline takes them."""
        call, out = self._params, {}
        if params.image is not None:
            if not self.supports_image_to_video:
                raise InvalidRequestError(f"model {self.spec.id} makes video from text only; it takes no image",
                                          param="image")
            out["image"] = params.image.convert("RGB").resize((width, height))
        elif self.requires_image:
            raise InvalidRequestError(f"model {self.spec.id} makes video from an image: send the first frame",
                                      param="image")
        if "prompt" in call:
            out["prompt"] = params.prompt
        if params.negative_prompt:
            if "negative_prompt" not in call:
                raise InvalidRequestError(f"model {self.spec.id} takes no negative prompt", param="negative_prompt")
            out["negative_prompt"] = params.negative_prompt
        return out

    def _size(self, params: VideoParams) -> tuple[int, int]:
        width = params.width or self.default_size[0]
        height = params.height or self.default_size[1]
        for name, value in (("width", width), ("height", height)):
            if value <= 0 or value % self.size_multiple:
                raise InvalidRequestError(f"{name} {value} must be a positive multiple of {self.size_multiple} "
                                          f"for model {self.spec.id}", param="size")
        return width, height

    def close(self) -> None:
        self._pipe = None
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()


def _default(params: dict[str, inspect.Parameter], *names: str) -> Any:
    for name in names:
        if name in params and isinstance(params[name].default, (int, float)) and params[name].default:
            return params[name].default
    return None


def _unet_frames(pipe: Any) -> int | None:
    config = getattr(getattr(pipe, "unet", None), "config", None)
    frames = config.get("num_frames") if config is not None and hasattr(config, "get") else None
    return int(frames) if frames else None


def _temporal_factor(pipe: Any) -> int:
    for name in ("vae_scale_factor_temporal", "vae_temporal_compression_ratio"):
        value = getattr(pipe, name, None)
        if isinstance(value, int) and value > 1:
            return value
    return 1


def _sizes(pipe: Any, params: dict[str, inspect.Parameter]) -> tuple[int, tuple[int, int]]:
    """(size multiple, default (width, height)): the VAE's spatial factor times the
    transformer's spatial patch size (at least 8, and even for H.264)."""
    spatial = 8
    for name in ("vae_scale_factor_spatial", "vae_spatial_compression_ratio", "vae_scale_factor"):
        value = getattr(pipe, name, None)
        if isinstance(value, int) and value > 0:
            spatial = value
            break
    config = getattr(getattr(pipe, "transformer", None), "config", None)
    patch = config.get("patch_size", 1) if config is not None and hasattr(config, "get") else 1
    if isinstance(patch, (list, tuple)):
        patch = patch[-1]
    multiple = max(8, spatial * int(patch or 1))
    height, width = _default(params, "height"), _default(params, "width")
    if not (height and width):
        unet = getattr(getattr(pipe, "unet", None), "config", None)
        sample = unet.get("sample_size") if unet is not None and hasattr(unet, "get") else None
        if isinstance(sample, (list, tuple)):
            sample = sample[0]
        side = int(sample) * spatial if sample else 256
        height, width = height or side, width or side
    width, height = (max(multiple, int(side) // multiple * multiple) for side in (width, height))
    return multiple, (width, height)


def _as_uint8(frames: Any) -> np.ndarray:
    """The first video of a pipeline's output as (frames, height, width, 3) uint8."""
    video = frames[0] if isinstance(frames, (list, tuple)) or getattr(frames, "ndim", 0) == 5 else frames
    if isinstance(video, (list, tuple)):
        video = np.stack([np.asarray(f.convert("RGB")) if hasattr(f, "convert") else np.asarray(f) for f in video])
    if isinstance(video, torch.Tensor):
        video = video.float().cpu().numpy()
    video = np.asarray(video)
    if video.dtype != np.uint8:
        video = (np.clip(video, 0.0, 1.0) * 255).round().astype(np.uint8)
    if video.shape[-1] != 3 and video.shape[1] == 3:  # channels first
        video = video.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(video)


def encode_mp4(video: np.ndarray, fps: int) -> bytes:
    """(frames, height, width, 3) uint8 -> MP4 bytes: H.264, yuv420p, sizes padded to even."""
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        raise MissingDependencyError(
            f"video encoding needs imageio-ffmpeg: pip install imageio-ffmpeg ({exc})") from exc
    n, h, w, _ = video.shape
    with tempfile.TemporaryDirectory(prefix="omniforge-video-") as tmp:
        out = Path(tmp) / "video.mp4"
        cmd = [exe, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{w}x{h}", "-r", str(fps), "-i", "pipe:0", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2",
               "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "fast", "-crf", "18",
               "-movflags", "+faststart", "-threads", "1", str(out)]
        try:
            proc = subprocess.run(cmd, input=video.tobytes(), capture_output=True, timeout=ENCODE_TIMEOUT_S,
                                  check=False)
        except subprocess.TimeoutExpired as exc:
            raise OmniforgeError(f"ffmpeg took over {ENCODE_TIMEOUT_S:.0f} s to encode {n} frames") from exc
        if proc.returncode != 0 or not out.is_file():
            raise OmniforgeError(f"ffmpeg could not encode the video: {proc.stderr.decode(errors='replace').strip()}")
        return out.read_bytes()


# ---- loading ----

def load(spec: ModelSpec, settings: Settings) -> DiffusersVideo:
    """Load `spec.local_path()`, a diffusers folder holding a video pipeline."""
    torch.set_num_threads(settings.threads)
    device = check_options(spec)
    folder = Path(spec.local_path(settings.cache_dir))
    if not (folder / "model_index.json").is_file():
        raise ModelLoadError(f"model {spec.id}: {folder} is not a diffusers folder (no model_index.json); "
                             "video models load from a diffusers folder")
    index = read_model_index(folder)
    video_bf16 = ("CogVideoX", "LTX", "Wan", "Hunyuan", "Mochi", "Allegro")
    class_name = str(spec.options.get("pipeline") or index.get("_class_name", ""))
    dtype = pick_dtype(spec, device, class_name.startswith(video_bf16))
    cls, extra = _pipeline_class(spec, index, dtype)
    kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": True, **extra}
    if spec.options.get("variant"):
        kwargs["variant"] = spec.options["variant"]
    try:
        pipe = cls.from_pretrained(str(folder), **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise ModelLoadError(f"model {spec.id}: diffusers could not load {folder}: {exc}") from exc
    if "num_frames" not in call_parameters(pipe):
        raise ModelLoadError(f"model {spec.id}: {type(pipe).__name__} in {folder} is not a video pipeline "
                             "(it takes no num_frames); use the diffusers image backend for it")
    pipe.set_progress_bar_config(disable=True)
    place(pipe, spec, device)
    return DiffusersVideo(spec, pipe, device)


def _pipeline_class(spec: ModelSpec, index: dict[str, Any], dtype: torch.dtype) -> tuple[Any, dict[str, Any]]:
    """The pipeline class to load the folder with, and the extra components it needs
    (AnimateDiff's MotionAdapter)."""
    import diffusers

    adapter_path = spec.options.get("motion_adapter")
    name = spec.options.get("pipeline") or ("AnimateDiffPipeline" if adapter_path and not str(
        index.get("_class_name", "")).startswith("AnimateDiff") else None)
    if name:
        name = name if str(name).endswith("Pipeline") else f"{name}Pipeline"
        cls = getattr(diffusers, str(name), None)
        if cls is None:
            raise ModelLoadError(f"model {spec.id}: options.pipeline {name!r} is not a diffusers pipeline")
    else:
        cls = diffusers.DiffusionPipeline
    extra: dict[str, Any] = {}
    needs_adapter = (getattr(cls, "__name__", "") + str(index.get("_class_name", ""))).count("AnimateDiff") > 0
    if adapter_path:
        path = Path(str(adapter_path)).expanduser()
        try:
            extra["motion_adapter"] = diffusers.MotionAdapter.from_pretrained(
                str(path), dtype=dtype, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(
                f"model {spec.id}: options.motion_adapter {path} is not a MotionAdapter folder: {exc}") from exc
    elif needs_adapter and "motion_adapter" not in index:
        raise ModelLoadError(f"model {spec.id}: AnimateDiff needs a MotionAdapter: set options.motion_adapter to its "
                             "local folder")
    return cls, extra
