"""diffusers image backend: text-to-image, image-to-image and inpainting with a user's Stable
Diffusion-family model on disk (SD 1.x/2.x, SDXL, SD-Turbo, SD3, FLUX, whatever diffusers' Auto
pipelines know), from a diffusers folder or a single .safetensors/.ckpt checkpoint.

Nothing is ever fetched from a hub: folders load with local_files_only=True, and a single-file
checkpoint needs `options.config`, a local diffusers folder of the same family that supplies the
component configs (and the tokenizer and scheduler), since diffusers would otherwise download
them. Image-to-image and inpainting reuse the text-to-image weights (from_pipe).

spec.options (all optional):
    config             single-file only: local diffusers folder with model_index.json
    pipeline           single-file only: pipeline class, e.g. "StableDiffusionXLPipeline" or
                       "StableDiffusionXL" (default: the config folder's own class)
    device             "auto" (cuda > mps > cpu), "cuda", "cuda:1", "mps", "cpu"
    dtype              "auto" (bfloat16 for FLUX/SD3 and float16 for the rest on cuda/mps,
                       float32 on cpu), "float16", "bfloat16", "float32"
    variant            weight file variant of a folder, e.g. "fp16"
    attention_slicing  true: compute attention in slices (less memory, a little slower)
    vae_tiling         true: decode large images tile by tile
    cpu_offload        "model" or "sequential": keep weights in RAM and move them to the GPU
                       as needed. Only means something on cuda: elsewhere the weights already
                       live in main memory, so the option is logged and ignored (a catalog
                       entry written for a GPU box still loads on a laptop).
    steps, guidance    this model's defaults (SD-Turbo: steps 1, guidance 0)
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import InvalidRequestError, MissingDependencyError, ModelLoadError
from ..types import ImageParams, ImageResult, ProgressFn
from .base import ImageModel

if TYPE_CHECKING:
    from ..catalog.spec import ModelSpec
    from ..config import Settings

log = logging.getLogger("omniforge.backends.diffusers")

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
_DTYPES = {"float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
           "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float32": torch.float32, "fp32": torch.float32}
_CPU_OFFLOAD = ("model", "sequential")
_MAX_TOKENIZER_LENGTH = 100_000  # larger model_max_length values mean "no limit set"


# ---- helpers shared with diffusers_video ----

def pick_device(spec: ModelSpec) -> str:
    """options.device, "auto" meaning cuda if present, then mps, then cpu."""
    want = str(spec.options.get("device", "auto")).lower()
    if want == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"model {spec.id}: options.device is {want!r} but torch sees no CUDA GPU; "
                             "use device \"auto\" or \"cpu\"")
    if want == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelLoadError(f"model {spec.id}: options.device is \"mps\" but this machine has no MPS; use \"auto\"")
    if not (want in ("cpu", "mps") or want.startswith("cuda")):
        raise ModelLoadError(f"model {spec.id}: options.device {want!r} is not auto, cuda, cuda:N, mps or cpu")
    return want


def pick_dtype(spec: ModelSpec, device: str, prefers_bf16: bool = False) -> torch.dtype:
    """options.dtype, "auto" meaning half precision on an accelerator and float32 on cpu."""
    want = str(spec.options.get("dtype", "auto")).lower()
    if want == "auto":
        if device == "cpu":
            return torch.float32
        return torch.bfloat16 if prefers_bf16 and device.startswith("cuda") else torch.float16
    if want not in _DTYPES:
        raise ModelLoadError(f"model {spec.id}: options.dtype {want!r} is not one of auto, {', '.join(_DTYPES)}")
    return _DTYPES[want]


def read_model_index(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{folder / 'model_index.json'} is unreadable: {exc}") from exc


def check_options(spec: ModelSpec) -> str:
    """Validate device, dtype and cpu_offload before touching any file; the device to use."""
    device = pick_device(spec)
    pick_dtype(spec, device)
    _offload_mode(spec)
    return device


def _offload_mode(spec: ModelSpec) -> str | None:
    offload = spec.options.get("cpu_offload")
    if offload in (None, False, "none", ""):
        return None
    if offload not in _CPU_OFFLOAD:
        raise ModelLoadError(
            f"model {spec.id}: options.cpu_offload {offload!r} is not \"model\", \"sequential\" or none")
    return str(offload)


def place(pipe: Any, spec: ModelSpec, device: str) -> None:
    """Move the pipeline to `device`, or set up CPU offload, and switch on the memory options."""
    offload = _offload_mode(spec)
    if offload and not device.startswith("cuda"):
        log.warning("model %s: options.cpu_offload=%s ignored: it needs a CUDA GPU and the model runs on %s, "
                    "where the weights already sit in main memory", spec.id, offload, device)
        offload = None
    try:
        if offload == "model":
            pipe.enable_model_cpu_offload(device=device)
        elif offload == "sequential":
            pipe.enable_sequential_cpu_offload(device=device)
        else:
            pipe.to(device)
    except ImportError as exc:  # offload needs accelerate
        raise MissingDependencyError(
            f"model {spec.id}: options.cpu_offload needs accelerate: pip install accelerate") from exc
    if spec.options.get("attention_slicing"):
        pipe.enable_attention_slicing()
    if spec.options.get("vae_tiling") and getattr(pipe, "vae", None) is not None and hasattr(pipe.vae, "enable_tiling"):
        pipe.vae.enable_tiling()


def call_parameters(pipe: Any) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(type(pipe).__call__).parameters)


def step_callbacks(pipe: Any, params: dict[str, inspect.Parameter], steps: int,
                   progress: ProgressFn | None) -> dict[str, Any]:
    """Keyword arguments that make `pipe` report each finished denoising step to `progress`:
    callback_on_step_end where the pipeline has it, else the legacy callback."""
    if progress is None:
        return {}

    def total(p: Any) -> int:
        return int(getattr(p, "_num_timesteps", None) or steps)

    if "callback_on_step_end" in params:
        def on_step_end(p: Any, i: int, t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            progress(i + 1, total(p))
            return tensors
        return {"callback_on_step_end": on_step_end}
    if "callback" in params:
        def legacy(i: int, t: Any, latents: Any) -> None:
            progress(i + 1, total(pipe))
        return {"callback": legacy, "callback_steps": 1}
    return {}


def pipeline_memory(pipe: Any) -> int:
    total = 0
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            total += sum(p.numel() * p.element_size() for p in component.parameters())
    return total


def random_seed() -> int:
    return secrets.randbelow(2**31)


def generators(seed: int, n: int) -> list[torch.Generator]:
    """One CPU generator per image (image i uses seed + i). diffusers draws the noise on the CPU
    and moves it, so a seed gives the same image on CPU and CUDA in float32 (measured on an
    H200: within 0.02/255); half precision draws its noise in half, so a seed's fp16 image differs
    from its fp32 one."""
    return [torch.Generator("cpu").manual_seed(seed + i) for i in range(n)]


def run_pipeline(pipe: Any, spec: ModelSpec, kwargs: dict[str, Any]) -> Any:
    """Call the pipeline; its input checks (ValueError naming the argument) become 400s."""
    try:
        with torch.inference_mode():
            return pipe(**kwargs)
    except ValueError as exc:
        raise InvalidRequestError(f"model {spec.id} rejected the request: {exc}") from exc


# ---- the image model ----

class DiffusersImage(ImageModel):
    """One diffusers text-to-image pipeline, with image-to-image and inpainting pipelines that
    share its weights where diffusers has them for the family."""

    def __init__(self, spec: ModelSpec, pipe: Any, device: str) -> None:
        super().__init__(spec)
        from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

        self.device = device
        self._t2i: Any = pipe
        self._i2i = _derived(AutoPipelineForImage2Image, pipe)
        self._inpaint = _derived(AutoPipelineForInpainting, pipe)
        # These depend on the weights, so they are set per instance.
        self.supports_image_to_image = self._i2i is not None  # type: ignore[misc]
        self.supports_inpainting = self._inpaint is not None  # type: ignore[misc]
        self._scheduler_class = type(pipe.scheduler)
        self._scheduler_config = pipe.scheduler.config
        self._params = call_parameters(pipe)
        self.size_multiple, self.default_size = _sizes(pipe)
        self.max_size = max(2048, 2 * max(self.default_size))
        self.default_steps = int(spec.options.get("steps", ImageModel.default_steps))
        self._default_guidance = spec.options.get("guidance")
        self._tokenizer, self.max_prompt_tokens = _prompt_tokenizer(pipe, self._params)

    @property
    def pipe(self) -> Any:
        if self._t2i is None:
            raise ModelLoadError(f"model {self.spec.id} was unloaded")
        return self._t2i

    def memory_bytes(self) -> int:
        return pipeline_memory(self._t2i) if self._t2i is not None else 0

    def prompt_tokens(self, text: str) -> int | None:
        """Tokens the (longest-context) text encoder sees for `text`, BOS/EOS included."""
        if self._tokenizer is None:
            return None
        return len(self._tokenizer(text, truncation=False, add_special_tokens=True)["input_ids"])

    def _scheduler(self, name: str | None) -> Any:
        """A fresh scheduler for one request: the model's own, or the named compatible one."""
        if not name:
            return self._scheduler_class.from_config(self._scheduler_config)
        compatible = {c.__name__: c for c in self.pipe.scheduler.compatibles}
        compatible[self._scheduler_class.__name__] = self._scheduler_class
        if name not in compatible:
            raise InvalidRequestError(
                f"scheduler {name!r} does not work with model {self.spec.id}; choose one of "
                f"{', '.join(sorted(compatible))}", param="scheduler")
        return compatible[name].from_config(self._scheduler_config)

    def generate(self, params: ImageParams, progress: ProgressFn | None = None) -> ImageResult:
        pipe, kwargs = self._task(params)
        width, height = self._size(params)
        steps = params.steps or self.default_steps
        seed = params.seed if params.seed is not None else random_seed()
        pipe.scheduler = self._scheduler(params.scheduler)
        call = call_parameters(pipe)
        kwargs |= {"prompt": params.prompt, "num_inference_steps": steps, "num_images_per_prompt": params.n,
                   "generator": generators(seed, params.n), "output_type": "pil"}
        if "height" in call:
            kwargs |= {"height": height, "width": width}
        if params.image is not None:
            kwargs["image"] = params.image.convert("RGB").resize((width, height))
            kwargs["strength"] = params.strength
        if params.mask is not None:
            kwargs["mask_image"] = params.mask.convert("L").resize((width, height))
        guidance = params.guidance if params.guidance is not None else self._default_guidance
        if guidance is not None:
            kwargs["guidance_scale"] = float(guidance)
        if params.negative_prompt:
            if "negative_prompt" not in call:
                raise InvalidRequestError(f"model {self.spec.id} ({type(pipe).__name__}) takes no negative prompt",
                                          param="negative_prompt")
            kwargs["negative_prompt"] = params.negative_prompt
        kwargs |= step_callbacks(pipe, call, steps, progress)
        images = run_pipeline(pipe, self.spec, kwargs).images
        images = [im.convert("RGB") if im.size == (width, height) else im.convert("RGB").resize((width, height))
                  for im in images]
        return ImageResult(images=images, seed=seed, steps=steps)

    def _task(self, params: ImageParams) -> tuple[Any, dict[str, Any]]:
        """The pipeline for the request (text-to-image, image-to-image or inpainting)."""
        self.pipe  # noqa: B018 - raises once unloaded
        if params.mask is not None and params.image is None:
            raise InvalidRequestError("a mask needs the image it applies to", param="image")
        if params.image is None:
            return self._t2i, {}
        if not 0.0 < params.strength <= 1.0:
            raise InvalidRequestError(f"strength must be in (0, 1], not {params.strength}", param="strength")
        steps = params.steps or self.default_steps
        if int(steps * params.strength) < 1:
            raise InvalidRequestError(f"strength {params.strength} with {steps} steps leaves no step to run; "
                                      "raise steps or strength", param="strength")
        if params.mask is None:
            if self._i2i is None:
                raise InvalidRequestError(f"model {self.spec.id} does not do image-to-image", param="image")
            return self._i2i, {}
        if self._inpaint is None:
            raise InvalidRequestError(f"model {self.spec.id} does not do inpainting", param="mask")
        if params.mask.size != params.image.size:
            raise InvalidRequestError(f"the mask is {params.mask.size[0]}x{params.mask.size[1]} but the image is "
                                      f"{params.image.size[0]}x{params.image.size[1]}; they must match", param="mask")
        return self._inpaint, {}

    def _size(self, params: ImageParams) -> tuple[int, int]:
        """The requested size; for an input image without one, its own size rounded down to
        `size_multiple`."""
        if params.width and params.height:
            width, height = params.width, params.height
        elif params.image is not None:
            m = self.size_multiple
            width = params.width or max(m, params.image.size[0] // m * m)
            height = params.height or max(m, params.image.size[1] // m * m)
        else:
            width, height = params.width or self.default_size[0], params.height or self.default_size[1]
        for name, value in (("width", width), ("height", height)):
            if value % self.size_multiple or value <= 0:
                raise InvalidRequestError(f"{name} {value} must be a positive multiple of {self.size_multiple}",
                                          param="size")
        return width, height

    def close(self) -> None:
        on_gpu = self.device.startswith("cuda")
        self._t2i = self._i2i = self._inpaint = None
        if on_gpu:
            torch.cuda.empty_cache()


def _derived(auto: Any, pipe: Any) -> Any:
    """The Auto pipeline of another task sharing `pipe`'s weights, or None where diffusers has
    none for this family."""
    try:
        derived = auto.from_pipe(pipe)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    derived.set_progress_bar_config(disable=True)
    return derived


def _sizes(pipe: Any) -> tuple[int, tuple[int, int]]:
    """(size multiple, default (width, height)) of a pipeline: sizes must be multiples of the
    VAE's downscale times the transformer's patch size (FLUX and SD3 patchify 2x2 latents), and
    of 8 (diffusers' own check); the default is the denoiser's native sample size."""
    vae_scale = int(getattr(pipe, "vae_scale_factor", 8) or 8)
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    config = getattr(denoiser, "config", {}) or {}
    patch = int(config.get("patch_size", 1) or 1) if hasattr(config, "get") else 1
    if type(pipe).__name__.startswith("Flux"):
        patch = 2  # FLUX packs 2x2 latent patches outside the transformer
    multiple = math.lcm(8, vae_scale * patch)
    sample = getattr(pipe, "default_sample_size", None)
    if not sample and hasattr(config, "get"):
        sample = config.get("sample_size")
    if isinstance(sample, (list, tuple)):
        sample = sample[0]
    side = int(sample) * vae_scale if sample else 512
    side = max(multiple, side // multiple * multiple)
    return multiple, (side, side)


def _prompt_tokenizer(pipe: Any, params: dict[str, inspect.Parameter]) -> tuple[Any, int | None]:
    """The tokenizer whose limit bounds the prompt, and that limit. Pipelines with a T5 encoder
    (FLUX, SD3) take `max_sequence_length` tokens through it; their CLIP encoders only add a
    pooled summary. Others are bound by their CLIP tokenizer's model_max_length (77)."""
    if "max_sequence_length" in params:
        t5 = getattr(pipe, "tokenizer_3", None) or getattr(pipe, "tokenizer_2", None)
        default = params["max_sequence_length"].default
        if t5 is not None and isinstance(default, int):
            return t5, default
    tokenizer = getattr(pipe, "tokenizer", None)
    if tokenizer is None:
        return None, None
    limit = getattr(tokenizer, "model_max_length", None)
    return tokenizer, int(limit) if isinstance(limit, int) and limit < _MAX_TOKENIZER_LENGTH else None


# ---- loading ----

def load(spec: ModelSpec, settings: Settings) -> DiffusersImage:
    """Load `spec.local_path()`: a diffusers folder or a single-file checkpoint."""
    torch.set_num_threads(settings.threads)
    device = check_options(spec)
    path = Path(spec.local_path(settings.cache_dir))
    if path.is_dir():
        pipe = _load_folder(spec, path, device)
    elif path.is_file() and path.suffix.lower() in SINGLE_FILE_SUFFIXES:
        pipe = _load_single_file(spec, path, device)
    elif path.is_file():
        raise ModelLoadError(f"model {spec.id}: {path} is neither a diffusers folder nor a "
                             f"{'/'.join(SINGLE_FILE_SUFFIXES)} checkpoint")
    else:
        raise ModelLoadError(f"model {spec.id}: {path} does not exist; set source to a diffusers folder "
                             "or a .safetensors/.ckpt file")
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    if getattr(pipe, "safety_checker", None) is None and "requires_safety_checker" in getattr(pipe, "config", {}):
        pipe.register_to_config(requires_safety_checker=False)
    place(pipe, spec, device)
    return DiffusersImage(spec, pipe, device)


def _prefers_bf16(class_name: str) -> bool:
    return class_name.startswith(("Flux", "StableDiffusion3", "Sana", "Lumina", "HunyuanDiT", "PixArtSigma"))


def _load_folder(spec: ModelSpec, folder: Path, device: str) -> Any:
    from diffusers import AutoPipelineForText2Image, DiffusionPipeline

    if not (folder / "model_index.json").is_file():
        raise ModelLoadError(f"model {spec.id}: {folder} is not a diffusers folder (no model_index.json); "
                             "point source at a diffusers folder or a .safetensors/.ckpt file")
    class_name = str(read_model_index(folder).get("_class_name", ""))
    kwargs: dict[str, Any] = {"dtype": pick_dtype(spec, device, _prefers_bf16(class_name)), "local_files_only": True}
    if spec.options.get("variant"):
        kwargs["variant"] = spec.options["variant"]
    try:
        try:
            return AutoPipelineForText2Image.from_pretrained(str(folder), **kwargs)
        except ValueError as exc:
            if "AutoPipeline can't find a pipeline" not in str(exc):
                raise
            return DiffusionPipeline.from_pretrained(str(folder), **kwargs)  # a family the Auto classes lack
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"model {spec.id}: diffusers could not load {folder}: {exc}") from exc


def _pipeline_class(spec: ModelSpec, config: Path) -> Any:
    import diffusers

    name = str(spec.options.get("pipeline") or read_model_index(config).get("_class_name", ""))
    if name and not name.endswith("Pipeline"):
        name += "Pipeline"
    cls = getattr(diffusers, name, None) if name else None
    if cls is None or not hasattr(cls, "from_single_file"):
        raise ModelLoadError(
            f"model {spec.id}: pipeline {name or '(none)'} cannot load single-file checkpoints; set options.pipeline "
            "to one that can, e.g. StableDiffusionPipeline, StableDiffusionXLPipeline, StableDiffusion3Pipeline, "
            "FluxPipeline")
    return cls


def _load_single_file(spec: ModelSpec, ckpt: Path, device: str) -> Any:
    """A single-file checkpoint, with the component configs from the local options.config
    folder. Checkpoints that hold the whole pipeline load through the pipeline class; those that
    hold only the denoiser (most FLUX files) load it alone and take the rest from the folder."""
    from diffusers.loaders.single_file_utils import SingleFileComponentError

    raw = spec.options.get("config")
    if not raw:
        raise ModelLoadError(
            f"model {spec.id}: {ckpt.name} is a single-file checkpoint, which needs the configs of its model "
            "family from a local diffusers folder: set options.config to that folder (e.g. a downloaded "
            "stable-diffusion-v1-5 folder without its weights); omniforge never fetches them from a hub")
    config = Path(str(raw)).expanduser()
    if not (config / "model_index.json").is_file():
        raise ModelLoadError(f"model {spec.id}: options.config {config} is not a local diffusers folder "
                             "(no model_index.json)")
    cls = _pipeline_class(spec, config)
    dtype = pick_dtype(spec, device, _prefers_bf16(cls.__name__))
    try:
        try:
            return cls.from_single_file(str(ckpt), config=str(config), dtype=dtype, local_files_only=True)
        except SingleFileComponentError:
            return _denoiser_only(cls, ckpt, config, dtype)
    except (OSError, ValueError, KeyError, RuntimeError, SingleFileComponentError) as exc:
        raise ModelLoadError(f"model {spec.id}: diffusers could not load {ckpt} with config {config}: {exc}") from exc


def _denoiser_only(cls: Any, ckpt: Path, config: Path, dtype: torch.dtype) -> Any:
    import diffusers

    index = read_model_index(config)
    name = "transformer" if "transformer" in index else "unet"
    model_cls = getattr(diffusers, index[name][1])
    denoiser = model_cls.from_single_file(str(ckpt), config=str(config), subfolder=name, dtype=dtype,
                                          local_files_only=True)
    return cls.from_pretrained(str(config), **{name: denoiser}, dtype=dtype, local_files_only=True)

