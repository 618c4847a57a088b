"""`omniforge keys create | list | revoke`: the server's API keys in <home>/keys.db (the secret is printed once)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated

import typer

from ..governance.keys import MODALITIES, KeyRecord, KeyStore
from .state import state, write_out

app = typer.Typer(help="API keys for the server: create (the secret is shown once), list, revoke.",
                  no_args_is_help=True)


def _store(ctx: typer.Context) -> KeyStore:
    return KeyStore(state(ctx).settings().home / "keys.db")


def _row(r: KeyRecord) -> str:
    created = dt.datetime.fromtimestamp(r.created).strftime("%Y-%m-%d %H:%M")
    limits = f"rpm={r.rpm or '-'} tpm={r.tpm or '-'}" + (f" pii={r.pii}" if r.pii else "")
    status = "revoked" if r.revoked else "active"
    return (f"{r.id}  {r.name:<16} {r.display:<10} {status:<8} {created}  models={','.join(r.models)} "
            f"modalities={','.join(r.modalities)} endpoints={','.join(r.endpoints)} {limits}")


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Who or what uses the key.")],
    models: Annotated[str, typer.Option(help="Comma-separated model ids or patterns (whisper-*), or '*'.")] = "*",
    modalities: Annotated[str, typer.Option(help=f"Comma-separated: {', '.join(MODALITIES)}, or '*'.")] = "*",
    endpoints: Annotated[str, typer.Option(help="Comma-separated path prefixes (/v1/chat), or '*'.")] = "*",
    rpm: Annotated[int, typer.Option(help="Requests per minute (0 = unlimited).")] = 0,
    tpm: Annotated[int, typer.Option(help="Tokens per minute (0 = unlimited).")] = 0,
    pii: Annotated[str, typer.Option(help="redact: personal data is redacted from this key's prompts before the "
                                     "model; off: never; default: the pii_redact_model setting.")] = "",
) -> None:
    """Create a key and print its secret: it is stored only as a hash, so copy it now."""
    store = _store(ctx)
    try:
        secret, record = store.create(name, models=models, modalities=modalities, endpoints=endpoints, rpm=rpm, tpm=tpm,
                                      pii=pii)
    finally:
        store.close()
    write_out(secret + "\n")
    state(ctx).progress.note(f"created {record.id} ({record.name}); the secret above is shown only once")


@app.command("list")
def list_keys(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the records as JSON.")] = False,
) -> None:
    """Every key (never a secret): id, name, last 4 characters, status, scopes and limits."""
    store = _store(ctx)
    try:
        records = store.list()
    finally:
        store.close()
    if as_json:
        write_out(json.dumps([r.to_dict() for r in records]) + "\n")
    else:
        write_out("".join(_row(r) + "\n" for r in records) or "no keys (create one with `omniforge keys create NAME`)\n")


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The key's id (key_...) or its name.")],
) -> None:
    """Revoke a key: a running server refuses it from its next request."""
    store = _store(ctx)
    try:
        record = store.revoke(key)
    finally:
        store.close()
    write_out(f"revoked {record.id} ({record.name})\n")
