"""`omniforge serve`: start the OpenAI-compatible HTTP server with the catalog's models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..catalog import Catalog
from .state import state


def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default 127.0.0.1). Env: OMNIFORGE_HOST.", show_default=False)
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port (default 8000). Env: OMNIFORGE_PORT.", show_default=False)
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML config file (overrides the global --config).", show_default=False),
    ] = None,
    preload: Annotated[
        list[str] | None,
        typer.Option(
            help="Model id to load at start (repeatable, or comma-separated; 'all' for every model).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the models over OpenAI's HTTP API (chat, completions, embeddings, audio)."""
    from ..server.run import serve as run_server  # FastAPI and uvicorn only when serving

    st = state(ctx)
    if config is not None:
        st.config = config
    ids = [p.strip() for item in preload or [] for p in item.split(",") if p.strip()] or None
    settings = st.settings(host=host, port=port)
    catalog = Catalog(settings.catalog_path)
    if ids == ["all"]:
        ids = [spec.id for spec in catalog.all()]
    if ids is not None:
        settings = settings.replace(preload=ids)
    run_server(settings)
