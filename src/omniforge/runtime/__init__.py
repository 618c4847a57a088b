"""Model runtime: loading, sharing, queueing and unloading model instances."""

from .manager import LoadedModel, ModelManager

__all__ = ["LoadedModel", "ModelManager"]
