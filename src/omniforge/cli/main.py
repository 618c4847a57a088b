"""The `omniforge` app: global options, command registration, and the one place that turns an
OmniforgeError (or an OSError on a user's file) into `error: <message>` on stderr and exit 1."""

from __future__ import annotations

import errno
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from .. import __version__
from ..errors import OmniforgeError
from . import (
    advise,
    audit,
    chat,
    embed,
    evals,
    generate,
    house,
    image,
    keys,
    models,
    pipelines,
    profile,
    risk,
    route,
    serve,
    speak,
    transcribe,
    usage,
    verify,
)
from .state import CliState, print_error


def fail(message: str) -> None:
    """Print one `error:` line on stderr and exit 1 (no traceback: the user can act on it)."""
    print_error(message)
    raise typer.Exit(1)


def _os_message(exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    return f"{exc.filename}: {reason}" if exc.filename else reason


class OmniforgeGroup(TyperGroup):
    """Runs every command (subgroups included) under one error handler."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OmniforgeError as exc:
            _close(ctx)
            fail(exc.message)
        except OSError as exc:
            _close(ctx)
            if exc.errno == errno.EPIPE:  # `omniforge generate ... | head`: the reader left
                _silence_stdout()
                raise typer.Exit(1) from None
            fail(_os_message(exc))
        finally:
            _close(ctx)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # not a real file descriptor (tests): nothing to flush


def _close(ctx: typer.Context) -> None:
    obj = ctx.find_root().obj
    if isinstance(obj, CliState):
        obj.close()


app = typer.Typer(
    cls=OmniforgeGroup,
    name="omniforge",
    help="Self-hosted generative AI on open-weight models: text, code, speech, transcripts, embeddings, images, video.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"omniforge {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home", help="State directory (catalog, model cache, logs). Env: OMNIFORGE_HOME.", show_default=False
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML config file. Env: OMNIFORGE_CONFIG_FILE.", show_default=False),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log engine and runtime details on stderr.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Run open-weight models on this machine: a CLI, a Python API and an OpenAI-compatible server."""
    ctx.obj = CliState(home=home, config=config)
    if verbose:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")


app.command("serve")(serve.serve)
app.command("chat")(chat.chat)
app.command("generate")(generate.generate)
app.command("speak")(speak.speak)
app.command("transcribe")(transcribe.transcribe)
app.command("embed")(embed.embed)
app.command("image")(image.image)
app.command("edit")(image.edit)
app.command("video")(image.video)
app.command("describe")(image.describe)
app.command("run")(pipelines.run)
app.command("profile")(profile.profile)
app.command("usage")(usage.usage)
app.command("route")(route.route)
app.command("advise")(advise.advise)
app.command("verify")(verify.verify)
app.add_typer(pipelines.app, name="recipes")
app.add_typer(models.app, name="models")
app.add_typer(keys.app, name="keys")
app.add_typer(audit.app, name="audit")
app.add_typer(risk.app, name="risk")
app.add_typer(house.train_app, name="train")
app.add_typer(house.eval_app, name="eval")
evals.register(house.eval_app)


def main() -> None:
    """Console entry point (`omniforge`, `python -m omniforge`)."""
    app(prog_name="omniforge")
