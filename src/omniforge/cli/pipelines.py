"""`omniforge run RECIPE` and `omniforge recipes list|show`: multimodal pipelines from the terminal."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import InvalidRequestError
from .state import save, state, write_out

app = typer.Typer(help="The pipeline recipes: built-in and your own (<home>/recipes/*.yaml).", no_args_is_help=True)


def _inputs(pairs: list[str]) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidRequestError(f"--input takes NAME=VALUE, not {pair!r}", param="input")
        inputs[key.strip()] = value
    return inputs


def _save_artifacts(ctx: typer.Context, outputs: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Write every artifact among the outputs (nested in mappings and lists too) into `folder`.

    An artifact is named after where it sits: `audio.wav`, `documents-french.md`, `images-2.png`.
    """
    runner = state(ctx).service.pipelines

    def walk(value: Any, name: str) -> Any:
        if isinstance(value, dict) and "artifact" in value:
            artifact = runner.artifacts.get(value)
            suffix = Path(artifact.name).suffix if artifact.name else _suffix(artifact.media_type)
            target = folder / f"{name}{suffix}"
            save(target, runner.artifacts.read(value))
            return str(target)
        if isinstance(value, dict):
            return {k: walk(v, f"{name}-{_slug(str(k))}") for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, f"{name}-{i + 1}") for i, v in enumerate(value)]
        return value

    return {name: walk(value, _slug(name)) for name, value in outputs.items()}


def _slug(key: str) -> str:
    return re.sub(r"[^a-z0-9_.]+", "-", key.lower()).strip("-") or "output"


def _suffix(media_type: str) -> str:
    return {"audio/wav": ".wav", "image/png": ".png", "video/mp4": ".mp4", "text/plain": ".txt",
            "text/markdown": ".md", "text/html": ".html", "audio/mpeg": ".mp3", "image/jpeg": ".jpg"
            }.get(media_type, ".bin")


def run(
    ctx: typer.Context,
    recipe: Annotated[str, typer.Argument(help="A recipe name (omniforge recipes list) or a YAML file.")],
    inputs: Annotated[
        list[str] | None,
        typer.Option("--input", "-i", help="NAME=VALUE (repeatable); a file path for audio, image and document "
                     "inputs.", show_default=False),
    ] = None,
    output_dir: Annotated[
        Path, typer.Option("--output-dir", "-o", help="Where audio, image and video outputs are written.")
    ] = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="Print the outputs as one JSON object.")] = False,
) -> None:
    """Run a pipeline recipe and print its outputs (files go to --output-dir)."""
    st = state(ctx)
    runner = st.service.pipelines
    job_id = runner.submit(recipe, _inputs(inputs or []))
    seen = 0
    with st.progress.steps(f"running {runner.recipe(recipe).name}") as progress:
        while True:
            job = runner.store.get_job(job_id)
            for event in runner.store.events(job_id, seen):
                seen = event["seq"]
                if event["kind"] == "step_finished":
                    st.progress.note(f"  {event['data'].get('step')}: done")
            progress(int(job.progress * 100), 100)
            if job.finished:
                break
            time.sleep(0.2)
    if job.status != "succeeded":
        raise InvalidRequestError(f"the run {job.status}: {job.error or 'no reason given'}")
    outputs = _save_artifacts(ctx, job.outputs or {}, output_dir)
    if as_json:
        write_out(json.dumps(outputs, ensure_ascii=False) + "\n")
        return
    for name, value in outputs.items():
        write_out(f"{name}: {value}\n")


@app.command("list")
def list_recipes(ctx: typer.Context) -> None:
    """The recipes you can run: name, inputs and what they do."""
    from ..pipelines.recipe import all_recipes

    for name, recipe in sorted(all_recipes(state(ctx).settings().home).items()):
        inputs = ", ".join(f"{k} ({v.type}{'' if v.required else ', optional'})" for k, v in recipe.inputs.items())
        write_out(f"{name:<18} {recipe.description}\n{'':<18} inputs: {inputs}\n")


@app.command("show")
def show_recipe(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Recipe name or YAML file.")]) -> None:
    """A recipe's steps and inputs, as YAML."""
    import yaml

    from ..pipelines.recipe import find_recipe

    write_out(yaml.safe_dump(find_recipe(name, state(ctx).settings().home).to_dict(), sort_keys=False))
