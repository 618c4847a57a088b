"""`omniforge advise`: which models, recipes, monthly cost, latency and EU AI Act tier suit a use case."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
import yaml

from ..errors import InvalidRequestError
from ..router.advisor import advise as advise_use_case
from .state import read_stdin_text, state, write_out


def read_use_case(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.expanduser().read_text())
    except yaml.YAMLError as exc:
        raise InvalidRequestError(f"use-case file {path} is not valid YAML: {exc}", param="file") from None
    if not isinstance(data, dict):
        raise InvalidRequestError(f"use-case file {path} must hold a mapping (name, description, tasks, languages, "
                                  "volumes, latency, data_sensitivity)", param="file")
    return data


def advise(
    ctx: typer.Context,
    use_case: Annotated[
        str | None,
        typer.Argument(help="The use case in plain words; without it, --file or stdin.", show_default=False),
    ] = None,
    yaml_file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="A YAML use case: name, description, tasks, languages, volumes, latency, "
                     "data_sensitivity.", show_default=False),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the advice as JSON instead of a table.")] = False,
) -> None:
    """Advise on a use case: models, recipes, monthly cost from measured profiles, latency, effort, AI Act tier."""
    if use_case and yaml_file:
        raise InvalidRequestError("give the use case in words or --file, not both", param="file")
    subject: str | dict | None = read_use_case(yaml_file) if yaml_file else use_case
    if subject is None:
        subject = (read_stdin_text() or "").strip() or None
    if not subject:
        raise InvalidRequestError("describe the use case: omniforge advise \"a chatbot for customer questions\" "
                                  "or --file use-case.yaml", param="use_case")
    advice = advise_use_case(state(ctx).service, subject)
    write_out(json.dumps(advice.to_dict(), indent=1) + "\n" if json_out else advice.table())
