"""`omniforge chat`: a multi-turn, streaming conversation in the terminal, or one answer to a
prompt given as an argument or piped on stdin."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import InvalidRequestError, OmniforgeError
from ..service import Service
from ..types import GenerationParams, Message
from .state import print_error, read_stdin_text, state, stdin_is_terminal, write_out

HELP = "Commands: /exit (or Ctrl-D) quits, /reset forgets the conversation, /help shows this."


def params_of(
    temperature: float | None, max_tokens: int | None, seed: int | None, stop: list[str] | None = None
) -> GenerationParams:
    """GenerationParams with only the options the user gave (the rest keep their defaults)."""
    given = {"temperature": temperature, "max_tokens": max_tokens, "seed": seed, "stop": stop or None}
    return GenerationParams(**{k: v for k, v in given.items() if v is not None})  # type: ignore[arg-type]


def stream_answer(
    service: Service, messages: list[Message], model: str | None, params: GenerationParams
) -> tuple[str, str | None]:
    """Stream one answer to stdout as it is generated: (text, finish_reason)."""
    stream = service.stream_chat(messages, model, params)
    parts: list[str] = []
    held = ""  # trailing whitespace, shown only if more text follows: answers end in one newline
    finish = None
    try:
        for _, delta in stream:
            text = held + (delta.text if parts else delta.text.lstrip())  # templates leave a leading space
            shown = text.rstrip()
            held = text[len(shown) :]
            if shown:
                write_out(shown)
                parts.append(shown)
            finish = delta.finish_reason or finish
    finally:
        stream.close()
    write_out("\n")
    return "".join(parts), finish


def _read_line(interactive_terminal: bool) -> str | None:
    """The next user line, or None at end of input (Ctrl-D)."""
    if interactive_terminal:
        try:
            return input("> ")
        except EOFError:
            write_out("\n")
            return None
    line = sys.stdin.readline() if sys.stdin is not None else ""
    return line.rstrip("\n") if line else None


def _repl(
    service: Service, messages: list[Message], model_id: str, params: GenerationParams, first: str | None,
    attached: dict[str, list[bytes]] | None = None,
) -> None:
    terminal = stdin_is_terminal()
    service.preload([model_id])  # a model that cannot load fails here, not on every turn
    if terminal:
        try:
            import readline  # noqa: F401  (line editing and history for input())
        except ImportError:
            pass
        typer.echo(f"Chatting with {model_id}. {HELP}", err=True)
    start = len(messages)  # system message(s) survive /reset
    pending = first
    while True:
        try:
            line = pending if pending is not None else _read_line(terminal)
        except KeyboardInterrupt:
            write_out("\n")
            return
        pending = None
        if line is None:
            return
        command = line.strip()
        if not command:
            continue
        if command in ("/exit", "/quit", "/bye"):
            return
        if command == "/reset":
            del messages[start:]
            typer.echo("(conversation cleared)", err=True)
            continue
        if command in ("/help", "/?"):
            typer.echo(HELP, err=True)
            continue
        messages.append(Message("user", line, **(attached or {})))
        attached = None  # attachments go with the first message only
        try:
            answer, finish = stream_answer(service, messages, model_id, params)
        except KeyboardInterrupt:  # stop this answer, keep the conversation
            write_out("\n")
            typer.echo("(interrupted)", err=True)
            messages.pop()
            continue
        except OmniforgeError as exc:
            print_error(exc.message + (" (use /reset to start over)" if exc.code == "context_length_exceeded" else ""))
            messages.pop()
            continue
        messages.append(Message("assistant", answer))
        if finish == "length":
            typer.echo("(the answer reached the token limit; raise it with --max-tokens)", err=True)


def chat(
    ctx: typer.Context,
    prompt: Annotated[
        str | None,
        typer.Argument(
            help="Ask once and exit; '-' reads stdin. Without it: a conversation in the terminal, or stdin when piped.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Model id, alias or OpenAI name.", show_default=False)
    ] = None,
    system: Annotated[str | None, typer.Option("--system", "-s", help="System prompt.", show_default=False)] = None,
    temperature: Annotated[
        float | None,
        typer.Option("--temperature", "-t", help="Sampling temperature, 0-2 (default 0.8).", show_default=False),
    ] = None,
    max_tokens: Annotated[
        int | None, typer.Option("--max-tokens", "-n", help="Most tokens per answer.", show_default=False)
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed, for repeatable answers.", show_default=False)] = None,
    interactive: Annotated[
        bool,
        typer.Option(
            "--interactive",
            "-i",
            help="Keep talking after the prompt, reading turns line by line from stdin even when it is piped.",
        ),
    ] = False,
    images: Annotated[
        list[Path] | None,
        typer.Option("--image", help="Attach an image to the first message (repeatable).", exists=True,
                     dir_okay=False, show_default=False),
    ] = None,
    audio: Annotated[
        list[Path] | None,
        typer.Option("--audio", help="Attach an audio clip to the first message (repeatable); it is transcribed.",
                     exists=True, dir_okay=False, show_default=False),
    ] = None,
) -> None:
    """Chat with a text model, streaming each answer as it is written."""
    service = state(ctx).service
    attached = {"images": [f.read_bytes() for f in images or []], "audio": [f.read_bytes() for f in audio or []]}
    spec = service.pick(model, "text")  # a wrong name fails before any prompt is read
    params = params_of(temperature, max_tokens, seed)
    messages = [Message("system", system)] if system else []
    if prompt == "-":
        prompt = read_stdin_text() or ""
    if interactive or (prompt is None and stdin_is_terminal()):
        _repl(service, messages, spec.id, params, prompt, attached)
        return
    if prompt is None:
        prompt = read_stdin_text() or ""
    if not prompt.strip():
        raise InvalidRequestError("no prompt: give one as an argument or on stdin", param="prompt")
    messages.append(Message("user", prompt, **attached))
    stream_answer(service, messages, spec.id, params)
