"""The OpenAI-compatible HTTP server: `create_app` builds the FastAPI app over a Service,
`serve` runs it with uvicorn."""

from __future__ import annotations

from ..config import Settings
from .app import create_app

__all__ = ["create_app", "serve"]


def serve(settings: Settings | None = None) -> None:
    """Run the server until interrupted (see omniforge.server.run.serve)."""
    from .run import serve as _serve

    _serve(settings)
