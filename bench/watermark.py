"""Watermark bench: how often the provenance watermark is found in house-model images after no
change, JPEG quality 75, a 50% downscale, and both; plus what labelling costs per file.

    .venv/bin/python bench/watermark.py [--n 20] [--sizes 256,512] [--images DIR]

Images come from service.generate_image with the embedded house model (flat shapes upscaled from
32x32: hard for a watermark, which hides in texture) at each size, or from --images DIR (PNGs,
used at their own size). Variants: invisible-watermark's dwtDctSvd at full resolution (base 1)
and at half resolution upsampled (base 2, what provenance.label uses from 512x512), and dwtDct at
full resolution for comparison. A detection counts only when all 8 payload bytes come back
exactly. Results go to bench/results/watermark.json.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from omniforge.governance import provenance

MODEL = "house-image"
from image import PROMPTS  # noqa: E402  # the house-vocabulary captions the image bench uses


def _jpeg(img: Any, quality: int = 75) -> Any:
    from PIL import Image

    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _half(img: Any) -> Any:
    from PIL import Image

    return img.resize((img.width // 2, img.height // 2), Image.Resampling.BICUBIC)


ATTACKS = {"none": lambda i: i, "jpeg75": _jpeg, "resize50": _half, "both": lambda i: _jpeg(_half(i))}


def _dwtdct(img: Any, payload: bytes) -> Any:
    import cv2
    import numpy as np
    from imwatermark import WatermarkEncoder
    from PIL import Image

    enc = WatermarkEncoder()
    enc.set_watermark("bytes", payload)
    return Image.fromarray(cv2.cvtColor(enc.encode(cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2BGR), "dwtDct"),
                                        cv2.COLOR_BGR2RGB))


def _dwtdct_detect(img: Any) -> bytes | None:
    import cv2
    import numpy as np
    from imwatermark import WatermarkDecoder
    from PIL import Image

    dec = WatermarkDecoder("bytes", 64)
    for k in (1.0, 0.5, 2.0):
        size = (round(img.width * k), round(img.height * k))
        if size[0] * size[1] < provenance.WM_MIN_PIXELS:
            continue
        found = dec.decode(cv2.cvtColor(np.asarray(img.resize(size, Image.Resampling.BICUBIC)), cv2.COLOR_RGB2BGR),
                           "dwtDct")
        if found[:4] == provenance.MAGIC:
            return bytes(found)
    return None


VARIANTS = {
    "dwtDctSvd-base1": (lambda img, p: provenance.embed_watermark(img, p, base=1), provenance.detect_watermark),
    "dwtDctSvd-base2": (lambda img, p: provenance.embed_watermark(img, p, base=2), provenance.detect_watermark),
    "dwtDct-base1": (_dwtdct, _dwtdct_detect),
}


def _house_images(n: int, size: int, threads: int) -> list[Any]:
    from omniforge.config import load_settings
    from omniforge.service import Service
    from omniforge.types import ImageParams

    service = Service(load_settings(home=tempfile.mkdtemp(prefix="wm-bench-"), threads=threads))
    try:
        return [service.generate_image(ImageParams(prompt=PROMPTS[i % len(PROMPTS)], seed=i, width=size,
                                                   height=size), MODEL)[1].images[0] for i in range(n)]
    finally:
        service.close()


def _psnr(a: Any, b: Any) -> float:
    import numpy as np

    mse = float(np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def measure(images: list[Any]) -> dict[str, Any]:
    payload = provenance.watermark_payload(MODEL)
    out: dict[str, Any] = {}
    for name, (embed, detect) in VARIANTS.items():
        hits = dict.fromkeys(ATTACKS, 0)
        embed_s, detect_s, psnrs, carried = 0.0, 0.0, [], 0
        for img in images:
            t = time.perf_counter()
            marked = embed(img, payload)
            embed_s += time.perf_counter() - t
            if marked is img:
                continue  # too small for this variant
            carried += 1
            psnrs.append(_psnr(img, marked))
            for attack, fn in ATTACKS.items():
                t = time.perf_counter()
                hits[attack] += detect(fn(marked)) == payload
                detect_s += time.perf_counter() - t
        n = len(images)
        out[name] = {
            "detection_rate": {k: round(v / n, 3) for k, v in hits.items()},
            "watermarked": carried, "images": n,
            "psnr_db_mean": round(sum(psnrs) / len(psnrs), 1) if psnrs else None,
            "embed_s_mean": round(embed_s / n, 4), "detect_s_mean": round(detect_s / max(1, carried * 4), 4),
        }
        print(name, json.dumps(out[name]), flush=True)
    return out


def label_cost(images: list[Any], home: Path) -> dict[str, float]:
    """Seconds per provenance.label call on a PNG of each size (watermark + sign)."""
    from omniforge.config import load_settings

    settings = load_settings(home=home)
    provenance.label(b"", "text/plain", MODEL, settings)  # nothing; warms imports below
    buf = io.BytesIO()
    images[0].save(buf, "PNG")
    provenance.label(buf.getvalue(), "image/png", MODEL, settings)  # makes the local certificate
    t = time.perf_counter()
    for img in images[:5]:
        buf = io.BytesIO()
        img.save(buf, "PNG")
        provenance.label(buf.getvalue(), "image/png", MODEL, settings)
    return {"label_png_s": round((time.perf_counter() - t) / min(5, len(images)), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--images", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "watermark.json")
    args = ap.parse_args()
    import cv2

    cv2.setNumThreads(args.threads)
    sets: dict[str, list[Any]] = {}
    if args.images:
        from PIL import Image

        sets[str(args.images)] = [Image.open(p).convert("RGB") for p in sorted(args.images.glob("*.png"))[:args.n]]
    else:
        for size in (int(s) for s in args.sizes.split(",")):
            sets[f"house-image {size}x{size}"] = _house_images(args.n, size, args.threads)
    results: dict[str, Any] = {"payload": "OMNF + sha256(model id)[:4] (64 bits), exact match", "sets": {}}
    for name, images in sets.items():
        print("==", name, flush=True)
        with tempfile.TemporaryDirectory() as home:
            results["sets"][name] = {"variants": measure(images), **label_cost(images, Path(home))}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
