"""`omniforge train house-image` and `omniforge eval house-image`: train the house image model
from scratch and measure it on held-out captions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import InvalidRequestError, ModelLoadError

train_app = typer.Typer(help="Train a model that omniforge builds itself.", no_args_is_help=True)
eval_app = typer.Typer(help="Measure a model that omniforge builds itself.", no_args_is_help=True)


@train_app.command("house-image")
def train_house_image(
    steps: Annotated[int, typer.Option(help="Optimizer steps (a --max-minutes budget may shorten them).")] = 20000,
    batch: Annotated[int, typer.Option(help="Scenes per step, drawn on the training device.")] = 256,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed and device repeat the run.")] = 0,
    lr: Annotated[float, typer.Option(help="Peak learning rate (warm-up, then cosine decay).")] = 1e-3,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    out: Annotated[Path, typer.Option(help="Folder for house-image.safetensors and .json.")] = Path("house-weights"),
    log: Annotated[
        Path | None, typer.Option(help="JSONL loss log (default OUT/train-log.jsonl).", show_default=False)
    ] = None,
    max_minutes: Annotated[
        float | None,
        typer.Option(help="Wall-clock budget: the schedule is fitted to it, and training saves and stops at it.",
                     show_default=False),
    ] = None,
) -> None:
    """Train the house text-to-image model on synthetic captioned scenes."""
    from ..house.train import TrainOptions, pick_device, train

    if steps < 1 or batch < 1:
        raise InvalidRequestError("--steps and --batch must be at least 1", param="steps" if steps < 1 else "batch")
    if lr <= 0:
        raise InvalidRequestError(f"--lr must be positive, not {lr}", param="lr")
    if max_minutes is not None and max_minutes <= 0:
        raise InvalidRequestError(f"--max-minutes must be positive, not {max_minutes}", param="max_minutes")
    try:
        pick_device(device)
    except (RuntimeError, ValueError) as exc:
        raise InvalidRequestError(str(exc), param="device") from None
    train(TrainOptions(steps=steps, batch=batch, seed=seed, lr=lr, device=device, out=str(out),
                       log=str(log) if log else None, max_minutes=max_minutes))


@eval_app.command("house-image")
def eval_house_image(
    n: Annotated[int, typer.Option(help="Held-out captions to draw and check.")] = 200,
    steps: Annotated[int, typer.Option(help="Sampling steps per image.")] = 30,
    seed: Annotated[int, typer.Option(help="Seed for the captions and the noise.")] = 0,
    weights: Annotated[
        Path | None,
        typer.Option(help="Folder with house-image.safetensors/.json (default: the shipped weights).",
                     show_default=False),
    ] = None,
) -> None:
    """Draw held-out captions and print how often each attribute is right."""
    import torch

    from ..house import WEIGHTS_DIR
    from ..house.evaluate import evaluate, format_report
    from ..house.model import load

    if n < 1 or steps < 1:
        raise InvalidRequestError("--n and --steps must be at least 1", param="n" if n < 1 else "steps")
    folder = weights or WEIGHTS_DIR
    try:
        model, _ = load(folder, "cuda" if torch.cuda.is_available() else "cpu")
    except (FileNotFoundError, ValueError) as exc:
        raise ModelLoadError(f"{exc}; pass --weights FOLDER (made by `omniforge train house-image --out FOLDER`)") from exc
    report = evaluate(model, n=n, steps=steps, seed=seed)
    typer.echo(format_report(report))
