"""The house image model (omniforge.house) as an ImageModel: text-to-image, image-to-image and
inpainting at the model's native 32x32, upscaled smoothly to the requested size.

Prompts use the house vocabulary (omniforge/house/scenes.py); other words are ignored, but a
prompt must name at least a shape or a colour. The negative prompt, when given, is parsed the
same way and replaces the empty caption as guidance's unconditional branch.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import InvalidRequestError, MissingDependencyError, ModelLoadError
from ..house import WEIGHTS_NAME
from ..house.scenes import NATIVE_SIZE, CaptionError, parse_caption, vocabulary_help
from ..types import ImageParams, ImageResult, ProgressFn
from .base import ImageModel

if TYPE_CHECKING:
    from PIL import Image

    from ..catalog.spec import ModelSpec
    from ..config import Settings
    from ..house.model import HouseModel

DEFAULT_GUIDANCE = 3.0
SCHEDULERS = ("euler", "FlowMatchEulerDiscreteScheduler")  # the one sampler there is


class HouseImage(ImageModel):
    """The house flow-matching model on the CPU (or `options.device`)."""

    supports_image_to_image = True
    supports_inpainting = True
    default_size = (256, 256)
    size_multiple = 32
    max_size = 1024
    default_steps = 30

    def __init__(self, spec: ModelSpec, model: HouseModel, device: torch.device) -> None:
        super().__init__(spec)
        self._model: HouseModel | None = model
        self.device = device
        self.max_prompt_tokens = model.tokenizer.max_words

    @property
    def model(self) -> HouseModel:
        if self._model is None:
            raise ModelLoadError(f"model {self.spec.id} was unloaded")
        return self._model

    def prompt_tokens(self, text: str) -> int | None:
        return len(self.model.tokenizer.tokenize(text))

    def memory_bytes(self) -> int:
        return self.model.parameter_count() * 4 if self._model is not None else 0

    def _slots(self, text: str, param: str, need_subject: bool) -> list[int]:
        try:
            caption, _ = parse_caption(text, strict=False)
        except CaptionError as exc:
            raise InvalidRequestError(f"{param}: {exc}", param=param) from None
        if need_subject and caption.shape is None and caption.colour is None:
            raise InvalidRequestError(
                f"the house image model draws one shape on a plain background; the {param} must name a shape or a "
                f"colour. {vocabulary_help()}",
                param=param,
            )
        return self.model.tokenizer.slots(caption)

    def _fit(self, value: int) -> int:
        step = self.size_multiple
        return min(self.max_size, max(step, round(value / step) * step))

    def _check(self, params: ImageParams) -> tuple[int, int]:
        default = self.default_size
        if params.image is not None:  # image-to-image: the input's size, to the nearest allowed one
            default = tuple(self._fit(v) for v in params.image.size)  # type: ignore[assignment]
        width, height = params.width or default[0], params.height or default[1]
        for name, value in (("width", width), ("height", height)):
            if value < self.size_multiple or value > self.max_size or value % self.size_multiple:
                raise InvalidRequestError(
                    f"{name} must be a multiple of {self.size_multiple} between {self.size_multiple} and "
                    f"{self.max_size}, not {value}", param=name)
        if params.scheduler is not None and params.scheduler not in SCHEDULERS:
            raise InvalidRequestError(
                f"scheduler {params.scheduler!r} is not available for {self.spec.id}; it samples with "
                f"{' or '.join(SCHEDULERS)}", param="scheduler")
        if params.mask is not None and params.image is None:
            raise InvalidRequestError("a mask needs an image to inpaint", param="mask")
        if not 0.0 < params.strength <= 1.0:
            raise InvalidRequestError(f"strength must be in (0, 1], not {params.strength}", param="strength")
        if params.steps is not None and not 1 <= params.steps <= 1000:
            raise InvalidRequestError(f"steps must be between 1 and 1000, not {params.steps}", param="steps")
        return width, height

    def generate(self, params: ImageParams, progress: ProgressFn | None = None) -> ImageResult:
        from PIL import Image

        from ..house.model import sample

        # 1. Check the request and read the prompts.
        width, height = self._check(params)
        model, n = self.model, params.n
        slots = torch.tensor([self._slots(params.prompt, "prompt", True)] * n, device=self.device)
        negative = None
        if params.negative_prompt:
            negative = torch.tensor([self._slots(params.negative_prompt, "negative_prompt", False)] * n,
                                    device=self.device)
        # 2. Noise per image: image i uses seed + i.
        seed = params.seed if params.seed is not None else secrets.randbelow(2**31)
        noise = torch.stack([
            torch.randn(3, NATIVE_SIZE, NATIVE_SIZE, generator=torch.Generator().manual_seed(seed + i)) for i in range(n)
        ]).to(self.device)
        # 3. Inputs for image-to-image / inpainting, at the native size.
        image = mask = None
        if params.image is not None:
            image = _to_tensor(params.image.convert("RGB"), NATIVE_SIZE).expand(n, -1, -1, -1).to(self.device)
        if params.mask is not None:
            soft = _to_tensor(params.mask.convert("L"), NATIVE_SIZE)
            mask = (soft * 2).clamp(0, 1).expand(n, -1, -1, -1).to(self.device)  # partly masked pixels repaint
        # 4. Sample.
        steps = params.steps or self.default_steps
        guidance = DEFAULT_GUIDANCE if params.guidance is None else params.guidance
        out = sample(model, slots, noise, steps=steps, guidance=guidance, image=image,
                     strength=params.strength if image is not None else 1.0, mask=mask, negative=negative,
                     progress=progress)
        # 5. Upscale; outside an inpainting mask the original pixels come back unchanged.
        pixels = (out.permute(0, 2, 3, 1).float().cpu().numpy() * 255).round().astype(np.uint8)
        images = [Image.fromarray(p).resize((width, height), Image.Resampling.BICUBIC) for p in pixels]
        if params.mask is not None:
            original = params.image.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
            keep = params.mask.convert("L").resize((width, height), Image.Resampling.BILINEAR)
            images = [Image.composite(img, original, keep) for img in images]
        used = max(1, round(steps * (params.strength if image is not None else 1.0)))
        return ImageResult(images=images, seed=seed, steps=used)

    def close(self) -> None:
        self._model = None


def _to_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """(1, C, size, size) float in [0, 1], area-downscaled."""
    from PIL import Image as PILImage

    small = np.asarray(image.resize((size, size), PILImage.Resampling.BOX), dtype=np.float32) / 255.0
    if small.ndim == 2:
        small = small[:, :, None]
    return torch.from_numpy(small).permute(2, 0, 1).unsqueeze(0).contiguous()


def _weights_folder(path: Path) -> Path:
    return path.parent if path.is_file() else path


def load(spec: ModelSpec, settings: Settings) -> HouseImage:
    """Load the weights at spec.local_path(): a folder with house-image.safetensors + .json (or
    either file). `options.device` picks the torch device (default cpu)."""
    folder = _weights_folder(Path(spec.local_path(settings.cache_dir)))
    torch.set_num_threads(settings.threads)
    options: dict[str, Any] = spec.options or {}
    device = torch.device(options.get("device", "cpu"))
    try:
        from ..house.model import load as load_house
    except ImportError as exc:
        raise MissingDependencyError(f"the house image model needs diffusers: pip install diffusers ({exc})") from exc
    try:
        model, _ = load_house(folder, device)
    except ImportError as exc:
        raise MissingDependencyError(f"the house image model needs diffusers: pip install diffusers ({exc})") from exc
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(
            f"model {spec.id}: cannot load house weights from {folder} ({WEIGHTS_NAME}.safetensors + "
            f"{WEIGHTS_NAME}.json expected): {exc}") from exc
    return HouseImage(spec, model, device)
