"""What every command shares: settings from the global options, one lazily built Service, and
progress on stderr (a spinner while a model loads or a long job runs) so stdout stays clean."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.status import Status

from ..config import Settings, load_settings
from ..service import Service
from ..storage import write_atomic


class Progress:
    """A spinner on stderr when it is a terminal, plain lines when it is not (logs, CI).

    Messages stack: a model that loads in the middle of "transcribing x.wav" shows its own
    message, then the spinner goes back to the job's."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self._status: Status | None = None
        self._messages: list[str] = []
        self._started: dict[str, float] = {}

    @property
    def live(self) -> bool:
        return self.console.is_terminal

    def _show(self) -> None:
        if not self.live:
            return
        if not self._messages:
            self.stop()
        elif self._status is None:
            self._status = self.console.status(self._messages[-1], spinner="dots")
            self._status.start()
        else:
            self._status.update(self._messages[-1])

    def _pop(self, message: str) -> None:
        if message in self._messages:
            self._messages.reverse()
            self._messages.remove(message)
            self._messages.reverse()
        self._show()

    def stop(self) -> None:
        self._messages.clear()
        if self._status is not None:
            self._status.stop()
            self._status = None

    def note(self, message: str) -> None:
        """One line on stderr, clear of the spinner."""
        self.console.print(message, markup=False, style="dim" if self.live else None)

    @contextlib.contextmanager
    def working(self, message: str) -> Iterator[None]:
        """A spinner with `message` for the duration of a long job."""
        self._messages.append(message)
        self._show()
        try:
            yield
        finally:
            self._pop(message)

    @contextlib.contextmanager
    def steps(self, message: str) -> Iterator[Any]:
        """Like `working`, with a (done, total) callback that shows the step count and percent."""
        self._messages.append(message)
        self._show()
        current = [message]
        last_note = [0.0]

        def update(done: int, total: int) -> None:
            text = f"{message}: {done}/{total} ({100 * done // max(total, 1)}%)"
            self._messages[self._messages.index(current[0])] = text
            current[0] = text
            if self.live:
                self._show()
            elif time.monotonic() - last_note[0] > 5 or done == total:  # logs: a line every 5 s
                last_note[0] = time.monotonic()
                self.note(text)

        try:
            yield update
        finally:
            self._pop(current[0])

    # -- runtime listener ------------------------------------------------------------------
    def on_model_event(self, event: str, model_id: str, service: Service | None = None) -> None:
        message = f"loading {model_id} (first use)"
        if event == "loading":
            self._started[model_id] = time.perf_counter()
            self._messages.append(message)
            if self.live:
                self._show()
            else:
                self.note(f"loading {model_id} ...")
        elif event == "loaded":
            seconds = time.perf_counter() - self._started.pop(model_id, time.perf_counter())
            memory = ""
            if service is not None:
                mb = next((m.memory_bytes for m in service.runtime.loaded() if m.id == model_id), 0) / 2**20
                memory = f", {mb:.0f} MB" if mb else ""
            self._pop(message)
            self.note(f"loaded {model_id} in {seconds:.1f} s{memory}")


@dataclass
class CliState:
    """Built by the global callback from --home/--config; commands ask it for the Service."""

    home: Path | None = None
    config: Path | None = None
    progress: Progress = field(default_factory=Progress)
    _service: Service | None = None

    def settings(self, **overrides: Any) -> Settings:
        return load_settings(self.config, home=self.home, **overrides)

    @property
    def service(self) -> Service:
        if self._service is None:
            service = Service(self.settings())
            service.runtime.listeners.append(
                lambda event, model_id: self.progress.on_model_event(event, model_id, service)
            )
            self._service = service
        return self._service

    def close(self) -> None:
        self.progress.stop()
        if self._service is not None:
            service, self._service = self._service, None
            service.close()


def state(ctx: typer.Context) -> CliState:
    """The CliState of the running command (one is made when the callback did not run)."""
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


def print_error(message: str) -> None:
    """The one shape of a user-facing error: `error: <message>` on stderr."""
    typer.echo(f"{typer.style('error:', fg='red', bold=True)} {message}", err=True)


def unescape(text: str) -> str:
    """Turn the escapes people type for stop sequences (\\n, \\t) into the characters."""
    return text.replace("\\n", "\n").replace("\\t", "\t")


def stdin_is_terminal() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def read_stdin_text() -> str | None:
    """All of stdin when it is piped in, None when it is a terminal or closed (nothing to read)."""
    if sys.stdin is None or sys.stdin.isatty():
        return None
    return sys.stdin.read()


def save(path: Path, data: bytes) -> Path:
    """Write a user's output file whole or not at all, with the permissions a new file gets."""
    return write_atomic(path, data)


def write_out(text: str) -> None:
    """Write to stdout now (streamed output), without a newline."""
    sys.stdout.write(text)
    sys.stdout.flush()
