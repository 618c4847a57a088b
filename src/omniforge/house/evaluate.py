"""Measures the house model: it draws held-out captions (never seen in training) and the checker,
which does not see the caption, reads each image back; the result is per-attribute accuracy.
A checker self-test on ground-truth renders of the same captions comes with it (~100 %).

Runs standalone: `python -m omniforge.house.evaluate --weights FOLDER --n 200`.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .checker import read_scene
from .scenes import ATTRIBUTES, Caption, split_captions

if TYPE_CHECKING:
    from .model import HouseModel

# The targets, per attribute and for all five together.
TARGETS = {"background": 0.95, "colour": 0.95, "position": 0.95, "size": 0.95, "shape": 0.80, "all": 0.75}


@dataclass
class EvalReport:
    n: int
    steps: int
    guidance: float
    accuracy: dict[str, float]  # per attribute, and "all"
    checker_accuracy: float  # the checker on ground-truth renders of the same captions
    unreadable: int  # generated images the checker could not read (counted wrong)
    seconds: float
    failures: list[str] = field(default_factory=list)  # a few "caption -> what was read"

    def meets_targets(self) -> bool:
        return all(self.accuracy[k] >= v for k, v in TARGETS.items())

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "targets": TARGETS, "meets_targets": self.meets_targets()}


def heldout_captions(n: int, seed: int) -> list[Caption]:
    """n held-out captions, shuffled by `seed` (repeating the split when n exceeds it)."""
    pool = split_captions("heldout")
    rng = random.Random(seed)
    picked: list[Caption] = []
    while len(picked) < n:
        picked += rng.sample(pool, min(len(pool), n - len(picked)))
    return picked


def _to_pil(batch: np.ndarray) -> list:
    from PIL import Image

    return [Image.fromarray(img) for img in (batch * 255).round().clip(0, 255).astype(np.uint8)]


def _score(captions: list[Caption], images: list) -> tuple[dict[str, int], int, list[str]]:
    correct = dict.fromkeys([*ATTRIBUTES, "all"], 0)
    unreadable, failures = 0, []
    for caption, image in zip(captions, images):
        reading = read_scene(image)
        if reading is None:
            unreadable += 1
            failures.append(f"{caption.text()} -> unreadable")
            continue
        ok = [getattr(reading, a) == getattr(caption, a) for a in ATTRIBUTES]
        for a, good in zip(ATTRIBUTES, ok):
            correct[a] += good
        correct["all"] += all(ok)
        if not all(ok):
            failures.append(f"{caption.text()} -> {reading.describe()}")
    return correct, unreadable, failures


def evaluate(model: HouseModel, n: int = 200, steps: int = 30, seed: int = 0, guidance: float = 3.0,
             batch: int = 100) -> EvalReport:
    """Generate n held-out captions with `model` (on its device) and score them."""
    import torch

    from .model import sample
    from .scenes import render, scenes_from_attributes

    started = time.perf_counter()
    device = next(model.parameters()).device
    captions = heldout_captions(n, seed)
    generated: list = []
    for start in range(0, n, batch):
        chunk = captions[start:start + batch]
        slots = torch.tensor([model.tokenizer.slots(c) for c in chunk], device=device)
        noise = torch.stack([
            torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(seed + start + i)) for i in range(len(chunk))
        ]).to(device)
        images = sample(model, slots, noise, steps=steps, guidance=guidance)
        generated += _to_pil(images.permute(0, 2, 3, 1).float().cpu().numpy())
    correct, unreadable, failures = _score(captions, generated)
    # The checker itself, on ground truth with random placement, at the native size and at 256 px.
    attributes = torch.tensor([c.indices() for c in captions])
    truth = scenes_from_attributes(attributes, torch.Generator().manual_seed(seed))
    truth_images = [*_to_pil(render(truth, 32).permute(0, 2, 3, 1).numpy()),
                    *_to_pil(render(truth, 256).permute(0, 2, 3, 1).numpy())]
    self_test, _, _ = _score(captions + captions, truth_images)
    return EvalReport(
        n=n, steps=steps, guidance=guidance,
        accuracy={k: round(v / n, 4) for k, v in correct.items()},
        checker_accuracy=round(self_test["all"] / (2 * n), 4),
        unreadable=unreadable,
        seconds=round(time.perf_counter() - started, 1),
        failures=failures[:10],
    )


def format_report(report: EvalReport) -> str:
    lines = [f"{'attribute':<12}{'accuracy':>10}{'target':>9}"]
    for key in (*ATTRIBUTES, "all"):
        mark = "ok" if report.accuracy[key] >= TARGETS[key] else "LOW"
        lines.append(f"{key:<12}{report.accuracy[key] * 100:>9.1f}%{TARGETS[key] * 100:>8.0f}%  {mark}")
    lines.append(f"checker self-test on ground truth: {report.checker_accuracy * 100:.1f}%")
    lines.append(f"{report.n} held-out captions, {report.steps} steps, guidance {report.guidance}, "
                 f"{report.unreadable} unreadable, {report.seconds} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import torch

    from . import WEIGHTS_DIR
    from .model import load

    p = argparse.ArgumentParser(prog="python -m omniforge.house.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=str(WEIGHTS_DIR), help="folder with house-image.safetensors/.json")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None, help="also write the report here as JSON")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    try:
        model, _ = load(Path(a.weights), device)
    except (FileNotFoundError, ValueError) as exc:
        sys.exit(f"error: {exc}")
    report = evaluate(model, n=a.n, steps=a.steps, seed=a.seed, guidance=a.guidance)
    print(format_report(report))
    for failure in report.failures[:5]:
        print(f"  miss: {failure}")
    if a.json:
        Path(a.json).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
