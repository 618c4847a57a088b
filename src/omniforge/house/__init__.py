"""The house text-to-image model: a small flow-matching UNet trained by omniforge on synthetic,
captioned scenes it draws itself (one shape on a plain background; vocabulary in scenes.py).

Modules: scenes (vocabulary, captions, batch renderer, held-out split), model (tokenizer, caption
encoder, UNet, sampler, save/load), train, checker (reads a scene back from pixels), evaluate.
This package imports nothing heavy here; torch and diffusers load with the modules that need them.
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"  # the shipped weights (package data)
WEIGHTS_NAME = "house-image"  # <name>.safetensors + <name>.json in a weights folder

__all__ = ["WEIGHTS_DIR", "WEIGHTS_NAME"]
