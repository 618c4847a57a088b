"""`omniforge eval humaneval`: code generation measured by HumanEval pass@1, each completion checked in the sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .state import state

app = typer.Typer(help="Measure models and recipes on real data.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Measure models and recipes on real data."""  # keeps `humaneval` a subcommand of `app`


def humaneval(
    ctx: typer.Context,
    model: Annotated[
        str | None, typer.Option(help="The text model (default: the default chat model).", show_default=False)
    ] = None,
    n: Annotated[
        int | None, typer.Option(help="The first N problems only (default: all 164).", show_default=False)
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds each completion's tests may run in the sandbox.")] = 10.0,
    max_tokens: Annotated[int, typer.Option(help="Tokens per completion at most.")] = 384,
    max_minutes: Annotated[
        float | None, typer.Option(help="Start no new problem after this many minutes (the report says how many ran).",
                                   show_default=False)
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the full report (every completion) as JSON here.",
                                  show_default=False)
    ] = None,
) -> None:
    """Print HumanEval pass@1: greedy completions, each run with its problem's tests in the sandbox."""
    from ..evals.humaneval import evaluate, save_report, summary

    st = state(ctx)
    with st.progress.steps("HumanEval") as update:
        report = evaluate(st.service, model, n, timeout, max_tokens,
                          progress=lambda done, total, passed: update(done, total),
                          max_seconds=None if max_minutes is None else max_minutes * 60)
    if json_path is not None:
        save_report(report, json_path)
        st.progress.note(f"report written to {json_path}")
    typer.echo(summary(report))


def register(eval_app: typer.Typer) -> None:
    """Add `humaneval` to an existing `omniforge eval` app."""
    eval_app.command("humaneval")(humaneval)


register(app)

__all__ = ["app", "humaneval", "register"]
