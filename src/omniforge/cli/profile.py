"""`omniforge profile [MODEL | --all]`: measure what models cost on this machine and save their profiles."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..errors import InvalidRequestError, ModelLoadError
from ..router.profiles import Profile, save_profile
from .state import state

_UNITS = (  # rate key -> how the table shows it
    ("s_per_1k_input_tokens", "s/1k input tokens"),
    ("s_per_1k_output_tokens", "s/1k output tokens"),
    ("s_per_audio_second", "s/audio s"),
    ("s_per_image", "s/image"),
    ("s_per_video_second", "s/video s"),
)


def describe_rates(p: Profile) -> str:
    """The rates with their units, e.g. `0.52 s/1k input tokens`; an image rate names its reference."""
    parts = []
    for key, unit in _UNITS:
        if key in p.rates:
            value = p.rates[key]
            text = f"{value:.0f} {unit}" if value >= 100 else f"{value:.3g} {unit}"
            if key == "s_per_image" and p.reference:
                text += f" @ {p.reference.get('size')}, {p.reference.get('steps')} steps"
            parts.append(text)
    return ", ".join(parts) or "-"


def table(profiles: list[Profile]) -> Table:
    t = Table(show_edge=False, pad_edge=False, header_style="bold")
    for column in ("model", "modality", "rates", "load s", "memory MB"):
        t.add_column(column, justify="right" if column in ("load s", "memory MB") else "left",
                     no_wrap=column != "rates", overflow="fold")
    for p in profiles:
        measured = p.measured
        t.add_row(p.model, p.modality, describe_rates(p) + ("" if measured else " (guess, not measured)"),
                  f"{p.load_seconds:.2f}" if measured else "-", f"{p.memory_mb:.0f}" if measured else "-")
    return t


def profile(
    ctx: typer.Context,
    model: Annotated[
        str | None, typer.Argument(help="The model to measure (default: every model in the catalog).",
                                   show_default=False)
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Measure every model in the catalog.")] = False,
    quick: Annotated[
        bool, typer.Option(help="One timed run per model at a small image size; video is skipped.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the profiles as JSON.")] = False,
) -> None:
    """Measure each model's seconds per unit of work on this machine (real requests, median of 3)
    and save them in HOME/profiles, where routing and cost estimates read them."""
    from ..router.profiler import measure_all

    if model is not None and all_:
        raise InvalidRequestError("give a MODEL or --all, not both", param="model")
    st = state(ctx)
    service = st.service
    specs = [service.model(model)] if model is not None else service.models()
    run = measure_all(service, specs, st.progress.steps, quick=quick)
    saved = 0
    for p in run.profiles:
        if p.measured:  # a guess never overwrites a measurement
            save_profile(service.settings.home, p)
            saved += 1
        else:
            st.progress.note(f"{p.model}: {p.notes[0] if p.notes else 'not measured'}")
    for model_id, message in run.errors.items():
        st.progress.note(f"{model_id}: failed: {message}")
    st.progress.stop()
    if saved:
        st.progress.note(f"{saved} profile(s) saved in {service.settings.home / 'profiles'}")
    if json_out:
        typer.echo(json.dumps([p.to_dict() for p in run.profiles], indent=1))
    elif run.profiles:
        console = Console(highlight=False)
        if not console.is_terminal:
            console = Console(highlight=False, width=160)  # piped: one line per model
        console.print(table(run.profiles))
    if run.errors:
        if len(specs) == 1:
            raise ModelLoadError(f"could not profile {specs[0].id}: {run.errors[specs[0].id]}")
        raise ModelLoadError(f"{len(run.errors)} of {len(specs)} models could not be profiled: "
                             f"{', '.join(run.errors)} (see above)")


__all__ = ["describe_rates", "profile", "table"]
