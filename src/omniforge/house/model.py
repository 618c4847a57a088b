"""The house model itself: caption tokenizer, caption encoder, a diffusers UNet2DConditionModel on
2x2 pixel-unshuffled 32x32 images, the flow-matching Euler sampler (classifier-free guidance,
image-to-image, RePaint-style inpainting) and save/load as fp16 safetensors + a JSON config.

Flow matching convention: x_t = (1 - t) * x_0 + t * noise, t in [0, 1], images in [-1, 1];
the network predicts the velocity noise - x_0 and sampling integrates from t = 1 down to 0.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import WEIGHTS_NAME
from .scenes import ALIASES, ATTRIBUTES, FILLERS, NATIVE_SIZE, VALUES, Caption, parse_caption

FORMAT = "omniforge-house-image"
FORMAT_VERSION = 1
MAX_PROMPT_WORDS = 32


class CaptionTokenizer:
    """Two views of a caption: words (for counting prompt tokens) and five attribute slots (what
    the encoder sees). Slot k holds its attribute's value, or that slot's "unnamed" token."""

    def __init__(self) -> None:
        words = ["<unk>", *sorted(FILLERS), *sorted(ALIASES)]
        for attribute in ATTRIBUTES:
            words += [w for w in VALUES[attribute] if w not in words]
        self.words = words
        self._word_ids = {w: i for i, w in enumerate(words)}
        # Slot ids: offset[k] is slot k's "unnamed" token; value v of slot k is offset[k] + 1 + v.
        self.offsets: list[int] = []
        total = 0
        for attribute in ATTRIBUTES:
            self.offsets.append(total)
            total += len(VALUES[attribute]) + 1
        self.slot_vocab_size = total
        self.max_words = MAX_PROMPT_WORDS

    def tokenize(self, text: str) -> list[int]:
        """Word ids, <unk> (0) for words outside the vocabulary."""
        import re

        return [self._word_ids.get(w, 0) for w in re.findall(r"[a-z]+", text.lower())]

    def slots(self, caption: Caption) -> list[int]:
        return [
            self.offsets[k] + (0 if v is None else 1 + v) for k, v in enumerate(caption.indices())
        ]

    def encode(self, text: str, strict: bool = True) -> list[int]:
        """The five slot ids of a caption (CaptionError for what the vocabulary cannot say)."""
        return self.slots(parse_caption(text, strict=strict)[0])

    def slots_from_attributes(self, attributes: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 5) slot ids from (B, 5) attribute indices; where keep is False the slot is unnamed."""
        offsets = self._offsets(attributes.device)
        ids = attributes + 1 + offsets
        return ids if keep is None else torch.where(keep, ids, offsets.expand_as(ids))

    def null_slots(self, n: int, device: str | torch.device = "cpu") -> torch.Tensor:
        """(n, 5) ids of the empty caption (the unconditional branch of guidance)."""
        return self._offsets(torch.device(device)).expand(n, -1).clone()

    def _offsets(self, device: torch.device) -> torch.Tensor:
        """The slot offsets as a tensor on `device`, made once (no host-to-device copy per step)."""
        cache: dict[str, torch.Tensor] = self.__dict__.setdefault("_offset_cache", {})
        key = str(device)
        if key not in cache:
            cache[key] = torch.tensor(self.offsets, device=device)
        return cache[key]


@dataclass
class HouseConfig:
    """Shapes of the network; saved beside the weights."""

    block_out_channels: list[int] = field(default_factory=lambda: [64, 128, 128])
    layers_per_block: int = 1
    heads: int = 4  # diffusers calls this attention_head_dim; it is the number of heads
    norm_num_groups: int = 16
    text_dim: int = 128
    text_layers: int = 2
    native_size: int = NATIVE_SIZE
    unshuffle: int = 2  # pixel-unshuffle factor: 32x32x3 -> 16x16x12

    @classmethod
    def tiny(cls) -> HouseConfig:
        """A few-hundred-thousand-parameter model for tests."""
        return cls(block_out_channels=[16, 32, 32], heads=2, norm_num_groups=8, text_dim=32, text_layers=1)


class CaptionEncoder(nn.Module):
    """Slot embeddings + a small transformer: (B, 5) slot ids -> (B, 5, text_dim)."""

    def __init__(self, vocab_size: int, dim: int, layers: int, slots: int = len(ATTRIBUTES)) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.position = nn.Parameter(torch.zeros(1, slots, dim))
        layer = nn.TransformerEncoderLayer(dim, nhead=4 if dim % 4 == 0 else 1, dim_feedforward=2 * dim,
                                           dropout=0.0, batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, slots: torch.Tensor) -> torch.Tensor:
        return self.norm(self.transformer(self.embed(slots) + self.position))


class HouseModel(nn.Module):
    """Velocity predictor: (x_t (B,3,32,32) in [-1,1], t (B,), slots (B,5)) -> (B,3,32,32)."""

    def __init__(self, config: HouseConfig) -> None:
        super().__init__()
        from diffusers import UNet2DConditionModel

        self.config = config
        self.tokenizer = CaptionTokenizer()
        self.encoder = CaptionEncoder(self.tokenizer.slot_vocab_size, config.text_dim, config.text_layers)
        channels = 3 * config.unshuffle**2
        self.unet = UNet2DConditionModel(
            sample_size=config.native_size // config.unshuffle,
            in_channels=channels,
            out_channels=channels,
            block_out_channels=tuple(config.block_out_channels),
            layers_per_block=config.layers_per_block,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=config.text_dim,
            attention_head_dim=config.heads,
            norm_num_groups=config.norm_num_groups,
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        context = self.encoder(slots)
        sample = F.pixel_unshuffle(x, self.config.unshuffle)
        out = self.unet(sample, t * 1000.0, encoder_hidden_states=context).sample
        return F.pixel_shuffle(out, self.config.unshuffle)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


ProgressFn = Callable[[int, int], None]


@torch.no_grad()
def sample(
    model: HouseModel,
    slots: torch.Tensor,
    noise: torch.Tensor,
    *,
    steps: int = 30,
    guidance: float = 3.0,
    image: torch.Tensor | None = None,
    strength: float = 1.0,
    mask: torch.Tensor | None = None,
    negative: torch.Tensor | None = None,
    progress: ProgressFn | None = None,
) -> torch.Tensor:
    """Integrate the flow from noise to images: (B, 3, 32, 32) in [0, 1].

    `noise` (B,3,32,32) fixes the randomness (callers seed it per image). With `image` (B,3,32,32
    in [0,1]) the flow starts at t = strength from the image noised that far (image-to-image);
    with `mask` too (B,1,32,32, 1 = repaint), the area outside the mask is replaced each step by
    the original noised to the current t (RePaint-style inpainting). `negative` (B, 5) slots
    replace the empty caption in the unconditional branch of guidance.
    """
    device = noise.device
    x0 = None if image is None else image.to(device) * 2 - 1
    t_start = 1.0 if x0 is None else float(min(max(strength, 0.0), 1.0))
    count = max(1, round(steps * t_start))
    times = torch.linspace(t_start, 0.0, count + 1, device=device)
    x = noise if x0 is None else (1 - t_start) * x0 + t_start * noise
    null = model.tokenizer.null_slots(slots.shape[0], device) if negative is None else negative.to(device)
    both = torch.cat([slots.to(device), null])
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    for i in range(count):
        t, t_next = times[i], times[i + 1]
        with autocast:
            v_cond, v_null = model(torch.cat([x, x]), t.expand(2 * x.shape[0]), both).float().chunk(2)
        v = v_null + guidance * (v_cond - v_null)
        x = x + (t_next - t) * v
        if mask is not None and x0 is not None:
            known = (1 - t_next) * x0 + t_next * noise
            m = mask.to(device)
            x = m * x + (1 - m) * known
        if progress is not None:
            progress(i + 1, count)
    return ((x + 1) / 2).clamp(0, 1)


def save(model: HouseModel, folder: Path, training: dict[str, Any] | None = None,
         state: dict[str, torch.Tensor] | None = None) -> Path:
    """Write <folder>/house-image.safetensors (fp16) and house-image.json; `state` overrides the
    model's own weights (the EMA copy). Returns the folder."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = state if state is not None else model.state_dict()
    tensors = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in weights.items()}
    tmp = folder / f".{WEIGHTS_NAME}.safetensors.tmp"
    save_file(tensors, str(tmp), metadata={"format": FORMAT})
    tmp.replace(folder / f"{WEIGHTS_NAME}.safetensors")
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "config": asdict(model.config),
        "parameters": model.parameter_count(),
        "vocabulary": {a: list(VALUES[a]) for a in ATTRIBUTES},
        "training": training or {},
    }
    (folder / f"{WEIGHTS_NAME}.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return folder


def weights_files(folder: Path) -> tuple[Path, Path]:
    folder = Path(folder)
    return folder / f"{WEIGHTS_NAME}.safetensors", folder / f"{WEIGHTS_NAME}.json"


def load(folder: Path, device: str | torch.device = "cpu") -> tuple[HouseModel, dict[str, Any]]:
    """Read weights written by save(): (model in float32 on `device`, eval mode; the JSON metadata).
    Raises FileNotFoundError or ValueError naming the file at fault."""
    from safetensors.torch import load_file

    weights_path, config_path = weights_files(folder)
    for path in (weights_path, config_path):
        if not path.is_file():
            raise FileNotFoundError(f"house model file {path} is missing")
    try:
        meta = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{config_path} is not valid JSON: {exc}") from exc
    if meta.get("format") != FORMAT:
        raise ValueError(f"{config_path} is not a house model config (format {meta.get('format')!r})")
    model = HouseModel(HouseConfig(**meta["config"]))
    state = {k: v.float() for k, v in load_file(str(weights_path)).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{weights_path} does not fit its config: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model.to(device).eval(), meta
