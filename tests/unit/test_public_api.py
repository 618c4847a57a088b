"""The public surface: `omniforge.__all__` is exactly what the package promises, importable
without loading any engine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import omniforge

PUBLIC = {
    "GenerationParams", "Message", "OmniforgeError", "Transcript", "__version__",
    "chat", "complete", "configure", "describe", "edit_image", "embed", "get_service", "image", "models", "speak",
    "transcribe", "video",
}


def test_all_is_the_public_surface() -> None:
    assert set(omniforge.__all__) == PUBLIC
    for name in omniforge.__all__:
        assert hasattr(omniforge, name), name


def test_import_is_light() -> None:
    """Heavy engines load only with the first model that needs them."""
    code = (
        "import sys, omniforge, omniforge.service;"
        "heavy = [m for m in ('torch', 'llama_cpp', 'faster_whisper', 'piper', 'sentence_transformers',"
        " 'onnxruntime', 'ctranslate2', 'fastapi', 'diffusers', 'transformers', 'rapidocr_onnxruntime', 'PIL')"
        " if m in sys.modules];"
        "print(','.join(heavy))"
    )
    src = str(Path(omniforge.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": src}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == ""


def test_every_module_opens_with_a_docstring() -> None:
    import pkgutil

    missing = []
    for info in pkgutil.walk_packages(omniforge.__path__, "omniforge."):
        if info.name.endswith("__main__"):
            continue
        module = __import__(info.name, fromlist=["_"])
        if not (module.__doc__ or "").strip():
            missing.append(info.name)
    assert missing == []
