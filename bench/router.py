"""Router overhead: `Router.route(request_from_chat(body))` per request vs `catalog.resolve(None, "text")` alone.

    .venv/bin/python bench/router.py [--n 5000] [--extra 20] [--out bench/results/router.json]

A stub setup, no model is loaded: the embedded models plus EXTRA text models from a temporary
catalog file (weights are small temp files), a measured profile for each in a temporary home,
and a runtime whose loaded() is empty. The issue's bound: router overhead <= 2 ms p95.
"""

from __future__ import annotations

import argparse
import base64
import gc
import io
import json
import sys
import tempfile
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))  # the omniforge under bench/ wins over an installed one

import yaml
from common import machine_info, percentile

from omniforge.catalog import Catalog
from omniforge.config import load_settings
from omniforge.router.cost import CostModel
from omniforge.router.profiles import Profile, save_profile
from omniforge.router.router import Router, request_from_chat

BOUND_P95_MS = 2.0
WARMUP = 300


class StubRuntime:
    """What the router asks the runtime: which models are loaded now (none)."""

    def loaded(self) -> list[Any]:
        return []


def _wav_b64(seconds: float) -> str:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(b"\0\0" * int(16000 * seconds))
    return base64.b64encode(buf.getvalue()).decode()


BODIES: dict[str, dict[str, Any]] = {
    "chat": {"model": "auto", "max_tokens": 200, "messages": [
        {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
        {"role": "user", "content": "What is the capital of France? " * 20},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Italy?"}]},
    "chat+image+audio+spoken": {"model": "auto", "modalities": ["text", "audio"], "metadata": {"quality": "basic"},
                                "messages": [{"role": "user", "content": [
                                    {"type": "text", "text": "What is in this picture, and what did I say?"},
                                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                                    {"type": "input_audio", "input_audio": {"data": _wav_b64(3.0), "format": "wav"}},
                                ]}]},
}


def setup(root: Path, extra: int) -> tuple[Router, Catalog]:
    """A home with EXTRA text models in its catalog file and a measured profile for every model."""
    settings = load_settings(home=root / "home")
    settings.ensure_home()
    weights = root / "weights"
    weights.mkdir()
    models = []
    for i in range(extra):
        src = weights / f"m{i}.gguf"
        src.write_bytes(b"\0" * (1000 + i))
        models.append({"id": f"text-{i:02d}", "modality": "text", "backend": "llama-cpp", "source": str(src),
                       "tasks": ["chat", "completion"] if i % 4 else ["code"], "languages": ["en", "fr"][: 1 + i % 2],
                       "context_length": [2048, 4096, 8192, 32768][i % 4], "quality": 1 + i % 3})
    settings.catalog_path.write_text(yaml.safe_dump({"models": models}, sort_keys=False))
    defaults = {k: getattr(settings, k) for k in (
        "default_chat_model", "default_speech_model", "default_transcription_model", "default_translation_model",
        "default_embedding_model", "default_image_model", "default_video_model", "default_vision_model")}
    catalog = Catalog(settings.catalog_path, defaults)
    rates = {"text": {"s_per_1k_input_tokens": 0.2, "s_per_1k_output_tokens": 5.0},
             "embedding": {"s_per_1k_input_tokens": 0.1}, "speech": {"s_per_audio_second": 0.05},
             "transcription": {"s_per_audio_second": 0.1}, "image": {"s_per_image": 2.0},
             "vision": {"s_per_image": 0.4}, "video": {"s_per_video_second": 3.0}}
    for k, spec in enumerate(catalog.all()):
        r = {key: v * (1 + k / 10) for key, v in rates[spec.modality].items()}
        save_profile(settings.home, Profile(spec.id, spec.modality, r, {"size": "256x256", "steps": 20}
                                            if spec.modality == "image" else {}, load_seconds=1.0 + k / 10))
    return Router(catalog, StubRuntime(), settings.home, CostModel.from_settings(settings)), catalog


def timed(fn: Callable[[], Any], n: int) -> list[float]:
    for _ in range(WARMUP):
        fn()
    samples = []
    gc.collect()
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return samples


def stats(samples: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(samples, 50), 4), "p95_ms": round(percentile(samples, 95), 4),
            "p99_ms": round(percentile(samples, 99), 4), "max_ms": round(max(samples), 4), "n": len(samples)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000, help="routed requests per variant, after a warm-up")
    ap.add_argument("--extra", type=int, default=20, help="text models added to the embedded ones")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "router.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        router, catalog = setup(Path(tmp), args.extra)
        baseline = stats(timed(lambda: catalog.resolve(None, "text"), args.n))
        results: dict[str, Any] = {}
        for name, body in BODIES.items():
            decision = router.route(request_from_chat(body))
            samples = timed(lambda body=body: router.route(request_from_chat(body)), args.n)
            results[name] = {**stats(samples), "chosen": decision.chosen,
                             "candidates": len(decision.candidates),
                             "kept": len(decision.order()),
                             "ratio_p50_vs_resolve": round(percentile(samples, 50) / baseline["p50_ms"], 1),
                             "ratio_p95_vs_resolve": round(percentile(samples, 95) / baseline["p95_ms"], 1),
                             "within_bound": percentile(samples, 95) <= BOUND_P95_MS}
        n_models = len(catalog.all())
    report = {"bench": "router", "models_in_catalog": n_models, "extra_text_models": args.extra,
              "bound_p95_ms": BOUND_P95_MS, "resolve_only": baseline, "route": results, "machine": machine_info(1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"{n_models} models in the catalog ({args.extra} extra text models), {args.n} requests per variant")
    print(f"{'variant':28} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}  x resolve (p50/p95)  chosen")
    print(f"{'catalog.resolve only':28} {baseline['p50_ms']:8.4f} {baseline['p95_ms']:8.4f} {baseline['p99_ms']:8.4f}")
    for name, r in results.items():
        print(f"{name:28} {r['p50_ms']:8.4f} {r['p95_ms']:8.4f} {r['p99_ms']:8.4f}  "
              f"{r['ratio_p50_vs_resolve']:>6} / {r['ratio_p95_vs_resolve']:<6}       {r['chosen']}"
              + ("" if r["within_bound"] else f"  (over the {BOUND_P95_MS} ms bound)"))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
