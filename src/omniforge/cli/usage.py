"""`omniforge usage`: what requests cost here, by key, project, model, modality or day, as a table and a chart."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import InvalidRequestError
from .state import save, state, write_out


def usage(
    ctx: typer.Context,
    by: Annotated[str, typer.Option("--by", help="Comma-separated: key, project, model, modality, endpoint, day, "
                                                 "month.")] = "day",
    since: Annotated[str | None, typer.Option(help="First day, YYYY-MM-DD.", show_default=False)] = None,
    until: Annotated[str | None, typer.Option(help="Last day, YYYY-MM-DD.", show_default=False)] = None,
    metric: Annotated[str, typer.Option(help="What the bars show: usd, compute_seconds, requests, tokens, "
                                             "energy_wh.")] = "usd",
    chart: Annotated[Path | None, typer.Option(help="Also write a PNG bar chart here.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    """Print spend from the usage ledger (<home>/usage/ledger.db): every request, server or CLI."""
    import json

    from ..router.report import METRICS, chart_png, table

    if metric not in METRICS:
        raise InvalidRequestError(f"--metric must be one of {', '.join(METRICS)}", param="metric")
    st = state(ctx)
    groups = [g.strip() for g in by.split(",") if g.strip()]
    rows = st.service.meter.ledger.usage(groups, since=since, until=until)
    if chart is not None:
        save(chart, chart_png(rows, groups, metric))
        st.progress.note(f"chart written to {chart}")
    if as_json:
        write_out(json.dumps(rows) + "\n")
        return
    write_out(table(rows, groups, metric) + "\n")
    prices = st.service.meter.cost_model.describe()
    write_out(f"prices: ${prices['usd_per_hour']}/h machine, {prices['watts']} W at ${prices['usd_per_kwh']}/kWh "
              f"= ${prices['usd_per_compute_hour']:.4f} per compute hour\n")
