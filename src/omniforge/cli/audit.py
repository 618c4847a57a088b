"""`omniforge audit`: check the audit log's hash chain and export its records as JSON Lines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .state import print_error, state, write_out

app = typer.Typer(help="The audit log (<home>/audit/audit.db): verify its hash chain, export its records.",
                  no_args_is_help=True)


def _log_path(ctx: typer.Context) -> Path:
    return Path(state(ctx).settings().home) / "audit" / "audit.db"


@app.command()
def verify(ctx: typer.Context) -> None:
    """Recompute every record's hash and link; exit 1 with one line per problem when the chain is broken."""
    from ..governance.audit import AuditLog

    path = _log_path(ctx)
    if not path.exists():
        write_out(f"ok: 0 records, no audit log at {path} yet\n")
        return
    with AuditLog(path) as log:
        report = log.verify()
    if report.ok:
        after = f" (after the retention anchor at record {report.anchor_seq})" if report.anchor_seq else ""
        write_out(f"ok: {report.checked} records, chain intact{after}\n")
        return
    write_out("".join(f"{problem}\n" for problem in report.problems))
    print_error(f"audit log {path}: {len(report.problems)} problem(s) in {report.checked} records")
    raise typer.Exit(1)


@app.command()
def export(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Where to write the JSON Lines ('-' for stdout).")],
    since: Annotated[str | None, typer.Option(help="Only records from this time on: YYYY-MM-DD or an ISO "
                                                   "date-time (UTC unless it says).", show_default=False)] = None,
) -> None:
    """Write the records (with hash and prev_hash) as one JSON object per line."""
    import sys

    from ..governance.audit import AuditLog, epoch

    if since is not None:
        epoch(since)  # a bad date fails before anything is written
    path = _log_path(ctx)
    if not path.exists():
        print_error(f"no audit log at {path} yet: the server writes it once it serves requests")
        raise typer.Exit(1)
    with AuditLog(path) as log:
        if str(file) == "-":
            count = log.export(sys.stdout, since)
        else:
            count = log.export(file, since)
    state(ctx).progress.note(f"{count} record(s) exported" + ("" if str(file) == "-" else f" to {file}"))
