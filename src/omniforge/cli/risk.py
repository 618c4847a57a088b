"""`omniforge risk assess USECASE.yaml`: the EU AI Act tier, obligations and controls, as a risk register."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..governance.register import build_register, slug, write_register
from .advise import read_use_case
from .state import state

app = typer.Typer(help="EU AI Act risk assessment of a use case, written as a risk register.", no_args_is_help=True)


@app.command("assess")
def assess(
    ctx: typer.Context,
    use_case: Annotated[Path, typer.Argument(metavar="USECASE.yaml", help="The use case: name, description, tasks, "
                                             "languages, volumes, latency, data_sensitivity, models.",
                                             show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the register's Markdown and JSON.")] = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="Print the register as JSON instead of a summary.")] = False,
) -> None:
    """Classify a use case under the EU AI Act, list its obligations and which omniforge controls meet each,
    and write the risk register (Markdown and JSON)."""
    register = build_register(state(ctx).service, read_use_case(use_case))
    md, js = write_register(register, out, f"risk-register-{slug(register.use_case['name'] or use_case.stem)}")
    if as_json:
        typer.echo(json.dumps(register.to_dict(), indent=1))
        return
    counts: dict[str, int] = {}
    for row in register.rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    typer.echo(f"{register.use_case['name'] or use_case.stem}: EU AI Act tier {register.tier}")
    for reason in register.reasons:
        typer.echo(f"  - {reason}")
    typer.echo(f"{len(register.rows)} obligations: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    for row in register.rows:
        if row.status in ("available, off", "partly met"):
            typer.echo(f"  {row.article}: {row.status}: {row.left}")
    pending = [m["id"] for m in register.models if not m["served"]]
    if pending:
        typer.echo(f"models not served until their terms are accepted: {', '.join(pending)}")
    typer.echo(f"wrote {md} and {js}")
