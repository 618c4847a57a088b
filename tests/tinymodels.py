"""Tiny random diffusers models built offline for tests: a Stable Diffusion folder, the same
weights as a single-file checkpoint in the original (LDM/CompVis) key layout, a text-to-video
(TextToVideoSD) folder and an AnimateDiff folder.

Every builder takes the folder (or file) to write and returns its path; the weights are random
but seeded, so two builds are identical. Builds are cached per test session by path: a second
call with a path that already holds a finished model returns at once. The tokenizer is a
WordLevel vocabulary trained here with `tokenizers` and wrapped as PreTrainedTokenizerFast,
so nothing is fetched from a hub.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

# A small vocabulary covering the prompts the tests use; unknown words map to [UNK].
_CORPUS = [
    "a photo of a red cat on a blue mat",
    "a painting of a green dog in the snow at night",
    "an astronaut riding a horse on the moon, high quality, blurry, ugly",
    "a tiny robot walks through a forest of tall trees with the sun and sky",
]
MAX_TOKENS = 77  # CLIP's limit, kept so prompt-length checks behave as with real models
_DONE = ".tiny-complete"  # written beside the model last: without it, a build is half-finished


def _marker(path: Path) -> Path:
    return path.with_name(path.name + _DONE)


def _finished(path: Path) -> bool:
    return _marker(path).exists()


def _mark_finished(path: Path) -> Path:
    _marker(path).write_text("ok")
    return path


def tiny_tokenizer() -> Any:
    """A WordLevel tokenizer trained on `_CORPUS`, with CLIP's special tokens and 77-token limit."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["<|endoftext|>", "<|startoftext|>", "[UNK]"]
    tok.train_from_iterator(_CORPUS, trainers.WordLevelTrainer(special_tokens=specials))
    bos, eos = tok.token_to_id("<|startoftext|>"), tok.token_to_id("<|endoftext|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>", special_tokens=[("<|startoftext|>", bos), ("<|endoftext|>", eos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        unk_token="[UNK]",
        pad_token="<|endoftext|>",
        model_max_length=MAX_TOKENS,
    )


def _text_encoder(tokenizer: Any) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=32,
    )
    return CLIPTextModel(config).eval()


def _vae() -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=64,
    )


def _scheduler() -> Any:
    from diffusers import EulerDiscreteScheduler

    # Stable Diffusion 1.x's noise schedule.
    return EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
        timestep_spacing="leading", steps_offset=1,
    )


def tiny_sd(folder: str | Path) -> Path:
    """A StableDiffusionPipeline folder (~1 MB): 32x32 latents from 64x64 images, 2-block UNet."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    folder = Path(folder)
    if _finished(folder):
        return folder
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=2,
        norm_num_groups=4,
    )
    pipe = StableDiffusionPipeline(
        unet=unet, vae=_vae(), text_encoder=_text_encoder(tokenizer), tokenizer=tokenizer,
        scheduler=_scheduler(), safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return _mark_finished(folder)


# --- diffusers -> original (LDM) key layout, generalized from the mapping in diffusers'
# --- scripts/convert_diffusers_to_original_stable_diffusion.py to any block count.

_UNET_TOP = {  # diffusers name -> LDM name
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_RESNET_PARTS = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0",
                 "conv2": "out_layers.3", "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}


def _unet_prefixes(config: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(diffusers prefix, LDM prefix, is_resnet) for every block of a UNet2DConditionModel."""
    per = config["layers_per_block"]
    n = len(config["block_out_channels"])
    out: list[tuple[str, str, bool]] = []
    for i in range(n):
        for j in range(per):
            out.append((f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{i * (per + 1) + j + 1}.0.", True))
            out.append((f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{i * (per + 1) + j + 1}.1.", False))
        if i < n - 1:
            out.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{(i + 1) * (per + 1)}.0.op.", False))
    for i in range(n):
        has_attn = config["up_block_types"][i].startswith("CrossAttn")
        for j in range(per + 1):
            out.append((f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{i * (per + 1) + j}.0.", True))
            out.append((f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{i * (per + 1) + j}.1.", False))
        if i < n - 1:
            up_slot = 2 if has_attn else 1
            out.append((f"up_blocks.{i}.upsamplers.0.", f"output_blocks.{i * (per + 1) + per}.{up_slot}.", False))
    out.append(("mid_block.resnets.0.", "middle_block.0.", True))
    out.append(("mid_block.attentions.0.", "middle_block.1.", False))
    out.append(("mid_block.resnets.1.", "middle_block.2.", True))
    return out


def unet_to_ldm(state: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    prefixes = _unet_prefixes(config)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key
        for hf, ldm in _UNET_TOP.items():
            if key.startswith(hf + "."):
                name = ldm + key[len(hf):]
        for hf, ldm, is_resnet in prefixes:
            if key.startswith(hf):
                rest = key[len(hf):]
                if is_resnet:
                    part, _, tail = rest.partition(".")
                    rest = f"{_RESNET_PARTS.get(part, part)}.{tail}"
                name = ldm + rest
                break
        out[name] = value
    return out


_VAE_ATTN_PARTS = {"group_norm.": "norm.", "to_q.": "q.", "to_k.": "k.", "to_v.": "v.", "to_out.0.": "proj_out."}


def vae_to_ldm(state: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    n = len(config["block_out_channels"])
    per = config["layers_per_block"]
    prefixes: list[tuple[str, str]] = [("conv_norm_out.", "norm_out.")]
    for i in range(n):
        for j in range(per):
            prefixes.append((f"down_blocks.{i}.resnets.{j}.", f"down.{i}.block.{j}."))
        for j in range(per + 1):
            prefixes.append((f"up_blocks.{i}.resnets.{j}.", f"up.{n - 1 - i}.block.{j}."))
        if i < n - 1:
            prefixes.append((f"down_blocks.{i}.downsamplers.0.", f"down.{i}.downsample."))
            prefixes.append((f"up_blocks.{i}.upsamplers.0.", f"up.{n - 1 - i}.upsample."))
    prefixes += [("mid_block.resnets.0.", "mid.block_1."), ("mid_block.resnets.1.", "mid.block_2."),
                 ("mid_block.attentions.0.", "mid.attn_1.")]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        coder, _, rest = key.partition(".")
        if coder not in ("encoder", "decoder"):
            out[key] = value  # quant_conv, post_quant_conv
            continue
        for hf, ldm in prefixes:
            if rest.startswith(hf):
                tail = rest[len(hf):]
                if ldm == "mid.attn_1.":
                    for a, b in _VAE_ATTN_PARTS.items():
                        if tail.startswith(a):
                            tail = b + tail[len(a):]
                    if tail.endswith("weight") and value.ndim == 2:
                        value = value.reshape(*value.shape, 1, 1)  # linear -> 1x1 conv
                rest = ldm + tail
                break
        out[f"{coder}.{rest}"] = value
    return out


def tiny_sd_single_file(path: str | Path, config_folder: str | Path) -> Path:
    """The weights of the `tiny_sd` folder `config_folder` as one .safetensors file in the
    original Stable Diffusion layout (model.diffusion_model., first_stage_model.,
    cond_stage_model.transformer.), loadable with
    StableDiffusionPipeline.from_single_file(path, config=config_folder, local_files_only=True)."""
    from safetensors.torch import load_file, save_file

    path, config_folder = Path(path), Path(config_folder)
    if _finished(path):
        return path
    tiny_sd(config_folder)

    def part(name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        sub = config_folder / name
        weights = next(iter(sorted(sub.glob("*.safetensors"))))
        return load_file(str(weights)), json.loads((sub / "config.json").read_text())

    unet, unet_cfg = part("unet")
    vae, vae_cfg = part("vae")
    text, _ = part("text_encoder")
    state = {f"model.diffusion_model.{k}": v for k, v in unet_to_ldm(unet, unet_cfg).items()}
    state |= {f"first_stage_model.{k}": v for k, v in vae_to_ldm(vae, vae_cfg).items()}
    # Original checkpoints hold transformers' CLIPTextModel under text_model.; transformers >= 5.6
    # saves it flattened (no text_model. prefix).
    text = {k if k.startswith("text_model.") else f"text_model.{k}": v for k, v in text.items()}
    state |= {f"cond_stage_model.transformer.{k}": v for k, v in text.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return _mark_finished(path)


def tiny_text_to_video(folder: str | Path) -> Path:
    """A TextToVideoSDPipeline folder with a tiny UNet3DConditionModel (64x64 frames)."""
    from diffusers import DDIMScheduler, TextToVideoSDPipeline, UNet3DConditionModel

    folder = Path(folder)
    if _finished(folder):
        return folder
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    unet = UNet3DConditionModel(
        block_out_channels=(16, 32),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=4,
    )
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False)
    pipe = TextToVideoSDPipeline(vae=_vae(), text_encoder=_text_encoder(tokenizer), tokenizer=tokenizer,
                                 unet=unet, scheduler=scheduler)
    pipe.save_pretrained(folder, safe_serialization=True)
    return _mark_finished(folder)


def tiny_animatediff(folder: str | Path) -> Path:
    """An AnimateDiffPipeline folder: the tiny SD components plus a tiny MotionAdapter, saved
    together (the adapter under motion_adapter/, as a user's converted folder holds it)."""
    from diffusers import AnimateDiffPipeline, DDIMScheduler, MotionAdapter, UNet2DConditionModel

    folder = Path(folder)
    if _finished(folder):
        return folder
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=2,
        norm_num_groups=4,
    )
    adapter = MotionAdapter(
        block_out_channels=(16, 32), motion_layers_per_block=1, motion_norm_num_groups=4,
        motion_num_attention_heads=2, motion_max_seq_length=32,
    )
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="linear", clip_sample=False)
    pipe = AnimateDiffPipeline(vae=_vae(), text_encoder=_text_encoder(tokenizer), tokenizer=tokenizer,
                               unet=unet, motion_adapter=adapter, scheduler=scheduler)
    pipe.save_pretrained(folder, safe_serialization=True)
    return _mark_finished(folder)
