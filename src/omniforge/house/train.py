"""Training of the house model: scenes are sampled and rendered on the training device each step
(no DataLoader), flow-matching loss, AdamW with warm-up + cosine decay, an EMA of the weights,
bf16 autocast, a JSONL loss log, checkpoints, and a wall-clock budget that shortens the schedule
to fit and stops (saving) when it runs out.

Runs standalone: `python -m omniforge.house.train --device cuda --out OUT` imports only this
package, torch and diffusers (plus rich for the progress bar when it is installed).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .model import HouseConfig, HouseModel, save
from .scenes import render, sample_scenes


@dataclass
class TrainOptions:
    steps: int = 20000
    batch: int = 256
    seed: int = 0
    lr: float = 1e-3
    warmup: int = 300
    min_lr_ratio: float = 0.02  # the cosine decays to lr * this
    ema: float = 0.999
    drop_caption: float = 0.1  # whole caption dropped: the unconditional branch of guidance
    drop_attribute: float = 0.15  # each attribute dropped: partial captions ("a red circle")
    device: str = "auto"
    out: str = "house-weights"
    log: str | None = None  # JSONL loss log; default <out>/train-log.jsonl
    max_minutes: float | None = None  # wall-clock budget for the loop (start-up excluded)
    checkpoint_every: int = 2000
    log_every: int = 50
    threads: int | None = None  # CPU threads (torch default when None)
    compile: bool = False  # torch.compile the model (slower start, faster steps on a GPU)
    bf16: bool | None = None  # bf16 autocast; None: on CUDA only (on the 2-core CPU here fp32 was 2x faster)
    tiny: bool = False  # a tiny network (tests)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name} was asked for but torch sees no CUDA device")
    return device


def lr_at(step: int, total: int, opts: TrainOptions) -> float:
    """Linear warm-up to opts.lr, then cosine down to opts.lr * min_lr_ratio at `total`."""
    if step < opts.warmup:
        return opts.lr * (step + 1) / opts.warmup
    progress = min(1.0, (step - opts.warmup) / max(1, total - opts.warmup))
    floor = opts.lr * opts.min_lr_ratio
    return floor + (opts.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def training_batch(model: HouseModel, batch: int, generator: torch.Generator, device: torch.device,
                   opts: TrainOptions) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_t, t, slots, target velocity), all drawn on `device`."""
    scenes = sample_scenes(batch, generator, device, split="train")
    x0 = render(scenes) * 2 - 1
    keep = torch.rand(batch, 5, generator=generator, device=device) >= opts.drop_attribute
    keep &= torch.rand(batch, 1, generator=generator, device=device) >= opts.drop_caption
    slots = model.tokenizer.slots_from_attributes(scenes.attributes, keep)
    noise = torch.randn(x0.shape, generator=generator, device=device)
    t = torch.sigmoid(torch.randn(batch, generator=generator, device=device))  # logit-normal
    uniform = torch.rand(batch, generator=generator, device=device)
    t = torch.where(torch.rand(batch, generator=generator, device=device) < 0.2, uniform, t)
    tb = t.view(-1, 1, 1, 1)
    return (1 - tb) * x0 + tb * noise, t, slots, noise - x0


class _Bar:
    """rich's progress bar when it is installed and stderr is a terminal; plain lines otherwise."""

    def __init__(self, total: int) -> None:
        self.total, self.rich, self._last = total, None, 0.0
        try:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.rich = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                 TextColumn("{task.fields[info]}"), transient=False)
            self.task = self.rich.add_task("train", total=total, info="")
            if not self.rich.console.is_terminal:
                self.rich = None
        except ImportError:
            pass
        if self.rich is not None:
            self.rich.start()

    def update(self, step: int, info: str, total: int | None = None) -> None:
        if total is not None:
            self.total = total
        if self.rich is not None:
            self.rich.update(self.task, completed=step, total=self.total, info=info)
        elif time.perf_counter() - self._last > 15 or step == self.total:
            self._last = time.perf_counter()
            print(f"step {step}/{self.total} {info}", file=sys.stderr, flush=True)

    def note(self, message: str) -> None:
        if self.rich is not None:
            self.rich.console.print(message, markup=False)
        else:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.rich is not None:
            self.rich.stop()


def train(opts: TrainOptions, on_step: Callable[[int, float], None] | None = None) -> Path:
    """Train from scratch and save the EMA weights under opts.out; returns that folder."""
    started = time.perf_counter()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    device = pick_device(opts.device)
    torch.manual_seed(opts.seed)
    if device.type == "cuda":
        torch.cuda.manual_seed_all(opts.seed)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    generator = torch.Generator(device=device).manual_seed(opts.seed)
    config = HouseConfig.tiny() if opts.tiny else HouseConfig()
    model = HouseModel(config).to(device).train()
    names = [name for name, _ in model.named_parameters()]
    params = [p for _, p in model.named_parameters()]
    ema_params = [p.detach().clone().float() for p in params]
    net = torch.compile(model) if opts.compile else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=opts.lr, betas=(0.9, 0.99), weight_decay=0.01,
                                  fused=device.type == "cuda")
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = Path(opts.log) if opts.log else out / "train-log.jsonl"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("w", encoding="utf-8")
    budget = opts.max_minutes * 60 if opts.max_minutes else None
    total = opts.steps
    bf16 = device.type == "cuda" if opts.bf16 is None else opts.bf16
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    bar = _Bar(total)
    bar.note(f"house model: {model.parameter_count() / 1e6:.2f}M parameters on {device}, batch {opts.batch}, "
             f"{total} steps, lr {opts.lr}, seed {opts.seed}, bf16 {bf16}")
    loop_start = time.perf_counter()
    running, count, step, loss_value, stopped_early = 0.0, 0, 0, float("nan"), False
    first_mark = (0, loop_start)  # (step, time) where the steady speed is measured from

    def ema_state() -> dict[str, torch.Tensor]:
        state = dict(model.state_dict())
        state.update(zip(names, ema_params))
        return state

    def meta() -> dict[str, Any]:
        return {"steps": step, "planned_steps": total, "options": asdict(opts), "device": str(device),
                "final_loss": loss_value, "minutes": round((time.perf_counter() - started) / 60, 2),
                "stopped_early": stopped_early}

    try:
        while step < total:
            lr = lr_at(step, total, opts)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x_t, t, slots, target = training_batch(model, opts.batch, generator, device, opts)
            with autocast:
                pred = net(x_t, t, slots)
            loss = F.mse_loss(pred.float(), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            decay = min(opts.ema, (1 + step) / (10 + step))
            with torch.no_grad():
                torch._foreach_lerp_(ema_params, [p.detach() for p in params], 1 - decay)
            step += 1
            running += loss.detach()
            count += 1
            if step % opts.log_every == 0 or step == total:
                loss_value = float(running) / count
                running, count = 0.0, 0
                elapsed = time.perf_counter() - loop_start
                rate = step / elapsed
                log.write(json.dumps({"step": step, "loss": round(loss_value, 5), "lr": lr,
                                      "elapsed_s": round(elapsed, 1), "steps_per_s": round(rate, 2)}) + "\n")
                log.flush()
                if on_step is not None:
                    on_step(step, loss_value)
                if step == opts.log_every:
                    first_mark = (step, time.perf_counter())
                    bar.note(f"speed: {rate:.2f} steps/s ({1000 / rate:.0f} ms/step) after {step} steps")
                if budget is not None and step in (4 * opts.log_every, 20 * opts.log_every):
                    # Fit the schedule to the budget (the cosine must finish inside it), from the
                    # speed measured after the first, slower steps.
                    now = time.perf_counter()
                    steady = (step - first_mark[0]) / max(now - first_mark[1], 1e-6)
                    fit = min(opts.steps, int(step + (budget - (now - started)) * 0.97 * steady))
                    if fit != total:
                        total = max(step + 1, fit)
                        bar.note(f"speed {steady:.2f} steps/s ({1000 / steady:.1f} ms/step); --max-minutes "
                                 f"{opts.max_minutes}: schedule set to {total} steps")
                bar.update(step, f"loss {loss_value:.4f} lr {lr:.2e} {rate:.1f} it/s", total)
                if budget is not None and step < total and time.perf_counter() - started > budget:
                    stopped_early = True
                    bar.note(f"--max-minutes {opts.max_minutes} reached at step {step}: saving and stopping")
                    break
            if opts.checkpoint_every and step % opts.checkpoint_every == 0 and step < total:
                save(model, out, meta(), state=ema_state())
    finally:
        bar.close()
        log.close()
    save(model, out, meta(), state=ema_state())
    print(f"saved {out} after {step} steps in {(time.perf_counter() - started) / 60:.1f} min "
          f"(last loss {loss_value:.4f}); loss log {log_path}", file=sys.stderr, flush=True)
    return out


def parse_args(argv: list[str] | None = None) -> TrainOptions:
    d = TrainOptions()
    p = argparse.ArgumentParser(prog="python -m omniforge.house.train", description="Train the house image model.")
    p.add_argument("--steps", type=int, default=d.steps, help="optimizer steps (default %(default)s)")
    p.add_argument("--batch", type=int, default=d.batch, help="scenes per step (default %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (warm-up, then cosine decay)")
    p.add_argument("--warmup", type=int, default=d.warmup)
    p.add_argument("--ema", type=float, default=d.ema)
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out", default=d.out, help="folder for house-image.safetensors/.json")
    p.add_argument("--log", default=None, help="JSONL loss log (default OUT/train-log.jsonl)")
    p.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget: fit the schedule, then stop")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--log-every", type=int, default=d.log_every, help="steps per loss-log line")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument("--compile", action="store_true", help="torch.compile the UNet")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast (default: on CUDA only)")
    p.add_argument("--tiny", action="store_true", help="a tiny network (for tests)")
    a = p.parse_args(argv)
    for name in ("steps", "batch"):
        if getattr(a, name) < 1:
            p.error(f"--{name} must be at least 1")
    if a.lr <= 0:
        p.error("--lr must be positive")
    return TrainOptions(steps=a.steps, batch=a.batch, seed=a.seed, lr=a.lr, warmup=a.warmup, ema=a.ema,
                        device=a.device, out=a.out, log=a.log, max_minutes=a.max_minutes,
                        checkpoint_every=a.checkpoint_every, log_every=a.log_every, threads=a.threads, compile=a.compile,
                        bf16=a.bf16, tiny=a.tiny)


def main(argv: list[str] | None = None) -> None:
    opts = parse_args(argv)
    try:
        pick_device(opts.device)
    except (ValueError, RuntimeError) as exc:
        sys.exit(f"error: {exc}")
    train(opts)


if __name__ == "__main__":
    main()
