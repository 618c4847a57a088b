"""Backend registry: engine name -> (modality, loader). Built-ins register through the same hook
as plugins (entry point group `omniforge.backends`), and each engine is imported only when a
model that uses it is loaded, so heavy imports stay lazy."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from ..errors import InvalidRequestError, MissingDependencyError

if TYPE_CHECKING:
    from ..catalog.spec import ModelSpec
    from ..config import Settings
    from .base import ModelInstance

Loader = Callable[["ModelSpec", "Settings"], "ModelInstance"]


@dataclass(frozen=True)
class BackendEntry:
    name: str
    modality: str
    target: str | Loader  # "package.module" exposing load(spec, settings), or the loader itself
    extra: str = ""  # pip package(s) to install when the engine is missing

    def loader(self) -> Loader:
        if callable(self.target):
            return self.target
        try:
            module = importlib.import_module(self.target)
        except ImportError as exc:
            raise MissingDependencyError(
                f"backend {self.name} needs {self.extra or exc.name}: pip install {self.extra or exc.name}"
            ) from exc
        return module.load


_REGISTRY: dict[str, BackendEntry] = {}
_plugins_loaded = False


def register_backend(name: str, modality: str, target: str | Loader, extra: str = "") -> None:
    """The one hook for adding an engine; plugins call it from their entry point."""
    _REGISTRY[name] = BackendEntry(name, modality, target, extra)


register_backend("llama-cpp", "text", "omniforge.backends.llama_cpp", "llama-cpp-python")
register_backend("piper", "speech", "omniforge.backends.piper", "piper-tts")
register_backend("faster-whisper", "transcription", "omniforge.backends.faster_whisper", "faster-whisper")
register_backend(
    "sentence-transformers", "embedding", "omniforge.backends.sentence_transformers", "sentence-transformers"
)
register_backend("house-image", "image", "omniforge.backends.house_image", "diffusers")
register_backend("diffusers", "image", "omniforge.backends.diffusers_image", "diffusers")
register_backend("diffusers-video", "video", "omniforge.backends.diffusers_video", "diffusers")
register_backend("storyboard", "video", "omniforge.backends.storyboard")
register_backend("image-facts", "vision", "omniforge.backends.image_facts", "rapidocr-onnxruntime")
register_backend("transformers-vlm", "text", "omniforge.backends.transformers_vlm", "transformers")
register_backend("llama-cpp-vision", "text", "omniforge.backends.llama_cpp_vision", "llama-cpp-python")


def _load_plugins() -> None:
    global _plugins_loaded
    if not _plugins_loaded:
        _plugins_loaded = True
        for ep in entry_points(group="omniforge.backends"):
            ep.load()(register_backend)


def backends() -> dict[str, BackendEntry]:
    _load_plugins()
    return dict(_REGISTRY)


def get_backend(name: str) -> BackendEntry:
    try:
        return backends()[name]
    except KeyError:
        raise InvalidRequestError(
            f"unknown backend {name!r}; choose one of {', '.join(backends())}", param="backend"
        ) from None


def load_model(spec: ModelSpec, settings: Settings) -> ModelInstance:
    return get_backend(spec.backend).loader()(spec, settings)
