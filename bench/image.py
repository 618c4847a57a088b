"""Image bench: the house text-to-image model sampled in-process vs through the omniforge server."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from common import SETTLE_S, interleave, loadavg, percentile, summary
from openai import OpenAI

MODEL = "house-image"
STEPS = 30  # omniforge's default for the house model (HouseImage.default_steps), sent explicitly
SIZE = (256, 256)  # the backend's default size: 32x32 native, upscaled bicubic
BATCH = 4  # images in one request vs that many single requests
# Captions in the house vocabulary (omniforge/house/scenes.py), one per repeat in turn; the same
# prompt and seed for every variant in a repeat.
PROMPTS = [
    "a small red circle at the left on a blue background",
    "a large yellow square in the center on a black background",
    "a small white triangle at the top on a green background",
    "a large purple circle at the bottom on an orange background",
    "a small blue square at the right on a white background",
]
WARMUP_PROMPT = "a large green triangle on a purple background"
WARMUP_SEED = 10_000


def stats(values: Sequence[float]) -> dict[str, float]:
    """summary() plus the p90 this section reports."""
    out = summary(values)
    if out["n"]:
        out["p90"] = percentile([float(v) for v in values], 90)
    return out


# -- the two ways to get an image ------------------------------------------------------------
def load_direct(weights: Path, threads: int) -> Any:
    """omniforge.house.model.load on the CPU, torch using `threads` (as the backend sets it)."""
    import torch

    from omniforge.house.model import load

    torch.set_num_threads(threads)
    model, _ = load(weights, "cpu")
    return model


def direct_images(model: Any, prompt: str, seed: int, n: int = 1) -> list[Any]:
    """What HouseImage.generate does for text-to-image: caption slots, noise seeded seed + i per
    image, sample() with the backend's steps and guidance, then the bicubic upscale to SIZE."""
    import torch
    from PIL import Image

    from omniforge.backends.house_image import DEFAULT_GUIDANCE
    from omniforge.house.model import sample
    from omniforge.house.scenes import NATIVE_SIZE, parse_caption

    caption, _ = parse_caption(prompt, strict=False)
    slots = torch.tensor([model.tokenizer.slots(caption)] * n)
    noise = torch.stack(
        [torch.randn(3, NATIVE_SIZE, NATIVE_SIZE, generator=torch.Generator().manual_seed(seed + i)) for i in range(n)]
    )
    out = sample(model, slots, noise, steps=STEPS, guidance=DEFAULT_GUIDANCE)
    pixels = (out.permute(0, 2, 3, 1).float().cpu().numpy() * 255).round().astype(np.uint8)
    return [Image.fromarray(p).resize(SIZE, Image.Resampling.BICUBIC) for p in pixels]


def server_images(oai: OpenAI, prompt: str, seed: int, n: int = 1) -> list[Any]:
    """/v1/images/generations with b64_json PNGs, decoded here (the client's cost counts)."""
    from PIL import Image

    resp = oai.images.generate(
        model=MODEL,
        prompt=prompt,
        n=n,
        size=f"{SIZE[0]}x{SIZE[1]}",  # type: ignore[arg-type]
        response_format="b64_json",
        extra_body={"seed": seed, "steps": STEPS},
    )
    images = []
    for item in resp.data or []:
        img = Image.open(io.BytesIO(base64.b64decode(item.b64_json or "")))
        img.load()
        if img.size != SIZE:
            raise RuntimeError(f"the server returned a {img.size} image for size {SIZE}")
        images.append(img)
    if len(images) != n:
        raise RuntimeError(f"the server returned {len(images)} images for n={n}")
    return images


def _timed(fn: Callable[[], list[Any]]) -> dict[str, Any]:
    t0 = time.perf_counter()
    images = fn()
    elapsed = time.perf_counter() - t0
    return {"elapsed_s": elapsed, "images": len(images), "s_per_image": elapsed / len(images), "_pixels": images}


def max_pixel_diff(a: list[Any], b: list[Any]) -> int:
    """Largest absolute 8-bit channel difference between two lists of same-sized images."""
    return max(
        int(np.abs(np.asarray(x.convert("RGB"), np.int16) - np.asarray(y.convert("RGB"), np.int16)).max())
        for x, y in zip(a, b, strict=True)
    )


# -- interleaved repeats ---------------------------------------------------------------------
def _repeat(
    variants: dict[str, Callable[[int], dict[str, Any]]],
    repeats: int,
    log: Callable[[str], None],
    warm_up: bool = True,
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, float]]:
    """(runs per variant, untimed warm-up seconds per variant); each fn takes the repeat index."""
    warmup_s: dict[str, float] = {}
    if warm_up:
        for name, fn in variants.items():
            log(f"  warm-up {name}")
            warmup_s[name] = fn(-1)["elapsed_s"]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for i, name in interleave(list(variants), repeats):
        time.sleep(SETTLE_S)
        r = variants[name](i)
        runs[name].append(r)
        log(
            f"  [{i + 1}/{repeats}] {name:<32} {r['s_per_image']:.2f} s/image  ({r['elapsed_s']:.2f} s, {r['images']} images)"
        )
    return runs, warmup_s


def _prompt_seed(i: int) -> tuple[str, int]:
    return (WARMUP_PROMPT, WARMUP_SEED) if i < 0 else (PROMPTS[i % len(PROMPTS)], i)


def bench_image(cfg: dict[str, Any], oai: OpenAI, weights: Path, log: Callable[[str], None]) -> dict:
    from omniforge.backends.house_image import DEFAULT_GUIDANCE

    repeats, batch_repeats = cfg["image_repeats"], cfg["image_batch_repeats"]
    before = loadavg()
    # 1. One image per call: in-process vs the server, the same prompt and seed in a repeat.
    #    The direct warm-up includes loading the weights; the server's loads the model there.
    t0 = time.perf_counter()
    model = load_direct(weights, cfg["threads"])
    load_s = time.perf_counter() - t0

    def direct(i: int) -> dict[str, Any]:
        prompt, seed = _prompt_seed(i)
        return _timed(lambda: direct_images(model, prompt, seed))

    def server(i: int) -> dict[str, Any]:
        prompt, seed = _prompt_seed(i)
        return _timed(lambda: server_images(oai, prompt, seed))

    log(f"image: {MODEL}, {STEPS} steps, {SIZE[0]}x{SIZE[1]}; 2 variants x {repeats} repeats")
    runs, warmup_s = _repeat({"direct": direct, "omniforge": server}, repeats, log)
    warmup_s["direct"] += load_s
    # Same prompt and seed on both paths: the pixels should agree (the last repeat's images).
    diff = max_pixel_diff(runs["direct"][-1]["_pixels"], runs["omniforge"][-1]["_pixels"])
    ratios = [s["s_per_image"] / d["s_per_image"] for d, s in zip(runs["direct"], runs["omniforge"], strict=True)]

    # 2. n=4 in one request vs 4 single requests (seeds i..i+3 either way), model already warm.
    def one_request(i: int) -> dict[str, Any]:
        prompt, seed = _prompt_seed(i)
        return _timed(lambda: server_images(oai, prompt, seed, n=BATCH))

    def singles(i: int) -> dict[str, Any]:
        prompt, seed = _prompt_seed(i)
        return _timed(lambda: [img for k in range(BATCH) for img in server_images(oai, prompt, seed + k)])

    batch_names = (f"omniforge n={BATCH}, one request", f"omniforge {BATCH} x n=1 requests")
    log(f"image batch: 2 variants x {batch_repeats} repeats")
    batch_runs, _ = _repeat(dict(zip(batch_names, (one_request, singles), strict=True)), batch_repeats, log, False)
    batch_ratios = [
        b["s_per_image"] / s["s_per_image"]
        for b, s in zip(batch_runs[batch_names[0]], batch_runs[batch_names[1]], strict=True)
    ]

    def summarize(rs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        clean = {name: [{k: v for k, v in r.items() if k != "_pixels"} for r in rows] for name, rows in rs.items()}
        return {
            name: {"s_per_image": stats([r["s_per_image"] for r in rows]), "runs": rows} for name, rows in clean.items()
        }

    out = summarize(runs)
    return {
        "loadavg_before": before,
        "model": MODEL,
        "steps": STEPS,
        "guidance": DEFAULT_GUIDANCE,
        "size": f"{SIZE[0]}x{SIZE[1]}",
        "prompts": PROMPTS[: min(repeats, len(PROMPTS))],
        "warmup_s": warmup_s,
        "variants": out,
        "omniforge_vs_direct": {
            "paired_ratio": stats(ratios),
            "ratio_of_medians": out["omniforge"]["s_per_image"]["median"] / out["direct"]["s_per_image"]["median"],
        },
        "max_pixel_diff": diff,
        "batch": {
            "n": BATCH,
            "repeats": batch_repeats,
            "variants": summarize(batch_runs),
            "one_request_vs_singles": stats(batch_ratios),
        },
        "loadavg_after": loadavg(),
    }
