"""The model catalog: embedded specs + the user's catalog file, with aliases and OpenAI names."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import yaml

from ..backends import get_backend
from ..errors import InvalidRequestError, ModelNotFoundError
from .embedded import EMBEDDED
from .spec import ModelSpec

# OpenAI model names resolve to the configured default of their modality, so existing OpenAI
# code works unchanged. Values are the Settings field that names the default.
OPENAI_NAMES: dict[str, str] = {
    **{
        name: "default_chat_model"
        for name in (
            "gpt-4o-mini", "gpt-4o", "gpt-4", "gpt-4-turbo", "gpt-3.5-turbo", "gpt-3.5-turbo-instruct",
            "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-5", "gpt-5-mini", "gpt-5-nano",
            "o1", "o1-mini", "o3", "o3-mini", "o4-mini", "davinci-002", "babbage-002",
            "gpt-4o-audio-preview", "gpt-4o-mini-audio-preview", "gpt-audio", "gpt-audio-mini",
        )
    },
    **{name: "default_speech_model" for name in ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")},
    **{
        name: "default_transcription_model"
        for name in ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")
    },
    **{
        name: "default_embedding_model"
        for name in ("text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002")
    },
    **{
        name: "default_image_model"
        for name in ("dall-e-2", "dall-e-3", "gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5")
    },
    **{name: "default_video_model" for name in ("sora-2", "sora-2-pro")},
}


# The Settings field naming each modality's default model.
DEFAULT_FIELDS: dict[str, str] = {
    "text": "default_chat_model",
    "speech": "default_speech_model",
    "transcription": "default_transcription_model",
    "embedding": "default_embedding_model",
    "image": "default_image_model",
    "video": "default_video_model",
    "vision": "default_vision_model",
}


class Catalog:
    """Every model omniforge knows: the embedded ones plus those in `catalog.yaml` under home.

    The file is rewritten atomically, so a crash or a bad entry never corrupts it.
    """

    def __init__(self, path: Path, defaults: dict[str, str] | None = None) -> None:
        self.path = Path(path)
        self.defaults = defaults or {}
        self._lock = threading.Lock()
        self._user: dict[str, ModelSpec] = self._read()

    # -- reading -----------------------------------------------------------------------------
    def _read(self) -> dict[str, ModelSpec]:
        if not self.path.exists():
            return {}
        try:
            data = yaml.safe_load(self.path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise InvalidRequestError(f"catalog file {self.path} is not valid YAML: {exc}") from exc
        entries = data.get("models", []) if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise InvalidRequestError(f"catalog file {self.path}: expected a 'models:' list")
        return {spec.id: spec for spec in (ModelSpec.from_dict(e) for e in entries)}

    def all(self) -> list[ModelSpec]:
        merged = {s.id: s for s in EMBEDDED}
        merged.update(self._user)
        return list(merged.values())

    def get(self, model_id: str) -> ModelSpec:
        """The spec for an id or alias (no modality defaults); ModelNotFoundError otherwise."""
        for spec in self.all():
            if spec.id == model_id:
                return spec
        for spec in self.all():
            if model_id in spec.aliases:
                return spec
        raise ModelNotFoundError(f"The model '{model_id}' does not exist", param="model")

    def resolve(self, name: str | None, modality: str, task: str | None = None) -> ModelSpec:
        """The model serving `name` for `modality`: its id or alias, an OpenAI name (-> the
        modality's default), or None (-> the default). Wrong modality is a clear 400."""
        default_field = DEFAULT_FIELDS[modality]
        if task == "translation":
            default_field = "default_translation_model"
        if not name or name == "default":
            name = self.defaults[default_field]
        elif name in OPENAI_NAMES and not self.knows(name):
            target_field = OPENAI_NAMES[name]
            if target_field == "default_transcription_model" and task == "translation":
                target_field = "default_translation_model"
            name = self.defaults[target_field]
        spec = self.get(name)
        if spec.modality != modality:
            raise InvalidRequestError(
                f"model '{spec.id}' is a {spec.modality} model and cannot serve this {modality} request",
                param="model",
                code="model_not_supported",
            )
        return spec

    def knows(self, name: str) -> bool:
        """Whether `name` is a model id or alias in the catalog."""
        return any(name == s.id or name in s.aliases for s in self.all())

    # -- writing -----------------------------------------------------------------------------
    def add(self, spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
        backend = get_backend(spec.backend)
        if backend.modality != spec.modality:
            raise InvalidRequestError(
                f"backend {spec.backend} serves {backend.modality}, not {spec.modality}", param="modality"
            )
        if not Path(spec.source).expanduser().exists():
            raise InvalidRequestError(f"model source {spec.source} does not exist", param="source")
        spec.source = str(Path(spec.source).expanduser().resolve())
        with self._lock:
            if any(s.id == spec.id for s in EMBEDDED):
                raise InvalidRequestError(f"'{spec.id}' is an embedded model; pick another id", param="id")
            if spec.id in self._user and not replace:
                raise InvalidRequestError(f"model '{spec.id}' already exists (remove it first)", param="id")
            for other in self.all():
                clash = {other.id, *other.aliases} & set(spec.aliases) if other.id != spec.id else set()
                if clash:
                    raise InvalidRequestError(
                        f"alias {sorted(clash)[0]!r} already names model '{other.id}'", param="aliases"
                    )
            users = dict(self._user)
            users[spec.id] = spec
            self._write(users)
            self._user = users
        return spec

    def remove(self, model_id: str) -> ModelSpec:
        with self._lock:
            if model_id not in self._user:
                if any(s.id == model_id for s in EMBEDDED):
                    raise InvalidRequestError(f"'{model_id}' is embedded and cannot be removed", param="id")
                raise ModelNotFoundError(f"The model '{model_id}' does not exist", param="model")
            users = dict(self._user)
            spec = users.pop(model_id)
            self._write(users)
            self._user = users
        return spec

    def _write(self, users: dict[str, ModelSpec]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(yaml.safe_dump({"models": [s.to_dict() for s in users.values()]}, sort_keys=False))
        os.replace(tmp, self.path)
