"""`omniforge generate`: continue a prompt (argument or stdin) with a text model, no chat
template, streaming the completion to stdout."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import InvalidRequestError
from .chat import params_of
from .state import read_stdin_text, state, unescape, write_out


def generate(
    ctx: typer.Context,
    prompt: Annotated[
        str | None, typer.Argument(help="Text to continue; omit it or give '-' to read stdin.", show_default=False)
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Model id, alias or OpenAI name.", show_default=False)
    ] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option(
            "--max-tokens", "-n", help="Most tokens to generate (default: the max_tokens setting).", show_default=False
        ),
    ] = None,
    temperature: Annotated[
        float | None,
        typer.Option("--temperature", "-t", help="Sampling temperature, 0-2 (default 0.8).", show_default=False),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed, for repeatable output.", show_default=False)] = None,
    stop: Annotated[
        list[str] | None, typer.Option(help="Stop before this text (repeatable; \\n is a newline).", show_default=False)
    ] = None,
    suffix: Annotated[
        str | None,
        typer.Option(help="Text after the gap: fill in the middle (models that support it).", show_default=False),
    ] = None,
) -> None:
    """Complete a prompt with a text model and stream the continuation to stdout."""
    if prompt is None or prompt == "-":
        prompt = read_stdin_text() or ""
    if not prompt:
        raise InvalidRequestError("no prompt: give one as an argument or on stdin", param="prompt")
    params = params_of(temperature, max_tokens, seed, [unescape(s) for s in stop or []])
    stream = state(ctx).service.stream_complete(prompt, model, params, suffix=suffix)
    last = ""
    try:
        for _, delta in stream:
            if delta.text:
                write_out(delta.text)
                last = delta.text
    finally:
        stream.close()
    if not last.endswith("\n"):
        write_out("\n")
