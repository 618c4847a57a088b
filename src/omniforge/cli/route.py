"""`omniforge route REQUEST.json`: which model `model: "auto"` would pick for a request, and why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..errors import InvalidRequestError
from .state import state


def route(
    ctx: typer.Context,
    request_file: Annotated[Path, typer.Argument(
        help="An OpenAI chat (or completions) JSON body, or router fields with 'modality' "
             "(input_tokens, images_in, language, min_quality, ...).", show_default=False)],
    explain: Annotated[bool, typer.Option("--explain/--no-explain",
                                          help="Print every candidate and why (--no-explain: the chosen id only).")
                       ] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print the whole decision as JSON.")] = False,
) -> None:
    """Print the model `auto` routes REQUEST_FILE to: cheapest that fits, with every candidate and why."""
    from ..router.router import Router, request_from_json

    try:
        data = json.loads(request_file.read_text())
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(f"{request_file} is not valid JSON: {exc}", param="request_file") from None
    req = request_from_json(data)
    decision = Router.for_service(state(ctx).service).route(req)
    if json_out:
        typer.echo(json.dumps(decision.to_dict(), indent=1, ensure_ascii=False))
    elif explain:
        typer.echo(decision.explain())
    else:
        typer.echo(decision.chosen)


__all__ = ["route"]
