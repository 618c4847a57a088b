"""omniforge: self-hosted generative AI on open-weight models — text, code, speech, transcripts,
embeddings, images, video — as a Python library, a CLI and an OpenAI-compatible server."""

from .api import (
    chat,
    complete,
    configure,
    describe,
    edit_image,
    embed,
    get_service,
    image,
    models,
    speak,
    transcribe,
    video,
)
from .errors import OmniforgeError
from .types import GenerationParams, Message, Transcript

__version__ = "0.1.0"

__all__ = [
    "GenerationParams",
    "Message",
    "OmniforgeError",
    "Transcript",
    "__version__",
    "chat",
    "complete",
    "configure",
    "describe",
    "edit_image",
    "embed",
    "get_service",
    "image",
    "models",
    "speak",
    "transcribe",
    "video",
]
