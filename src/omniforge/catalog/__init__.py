"""Model catalog: specs, embedded model locators, the user's catalog file and aliases."""

from .catalog import OPENAI_NAMES, Catalog
from .embedded import EMBEDDED
from .spec import MODALITIES, ModelSpec

__all__ = ["EMBEDDED", "MODALITIES", "OPENAI_NAMES", "Catalog", "ModelSpec"]
