"""`omniforge models`: list, show, add and remove the models in the catalog."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from ..backends import get_backend
from ..catalog import ModelSpec
from ..errors import InvalidRequestError
from .state import state

app = typer.Typer(help="List, show, add and remove models.", no_args_is_help=True)

# Tasks a new model serves when --task is not given, by modality.
DEFAULT_TASKS = {
    "text": ["chat", "completion"],
    "speech": ["speech"],
    "transcription": ["transcription"],
    "embedding": ["embedding"],
    "image": ["text-to-image", "image-to-image", "inpainting"],
    "video": ["text-to-video"],
    "vision": ["image-analysis"],
}


def human_size(n: int) -> str:
    if not n:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit in ("B", "KB") else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def infer_backend(path: Path) -> str:
    """The engine for weights at `path`, from what is there; a clear error when it is not clear."""
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return "llama-cpp"
        if path.suffix.lower() == ".onnx":
            return "piper"
        if path.suffix.lower() in (".safetensors", ".ckpt"):
            return "diffusers"  # a single-file Stable Diffusion-family checkpoint (needs --option config=FOLDER)
    elif path.is_dir():
        if (path / "model.bin").is_file() and (path / "config.json").is_file():
            return "faster-whisper"
        if (path / "modules.json").is_file() or (path / "config_sentence_transformers.json").is_file():
            return "sentence-transformers"
        if (path / "model_index.json").is_file():
            pipeline = json.loads((path / "model_index.json").read_text()).get("_class_name", "")
            video = any(w in pipeline for w in ("Video", "AnimateDiff", "I2V", "Wan", "LTX", "Mochi", "Hunyuan"))
            return "diffusers-video" if video else "diffusers"
        if (path / "preprocessor_config.json").is_file() or (path / "processor_config.json").is_file():
            return "transformers-vlm"
    raise InvalidRequestError(
        f"cannot tell which engine runs {path}; pass --backend (a .gguf file: llama-cpp, a Piper .onnx voice: "
        "piper, a CTranslate2 Whisper folder: faster-whisper, a sentence-transformers folder: "
        "sentence-transformers, a diffusers folder: diffusers or diffusers-video, a vision-language "
        "transformers folder: transformers-vlm)",
        param="backend",
    )


def _parse_options(pairs: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidRequestError(f"--option takes KEY=VALUE, not {pair!r}", param="option")
        options[key.strip()] = yaml.safe_load(value) if value else ""
    return options


@app.command("list")
def list_models(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the specs as JSON.")] = False,
) -> None:
    """List every model: the embedded ones and those you added."""
    specs = state(ctx).service.models()
    if as_json:
        typer.echo(json.dumps([s.to_dict() for s in specs], indent=2))
        return
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    for column in ("id", "modality", "backend", "license", "aliases", "embedded", "size"):
        table.add_column(
            column,
            justify="right" if column == "size" else "left",
            no_wrap=column not in ("license", "aliases"),
            overflow="fold",
        )
    for s in specs:
        table.add_row(
            s.id,
            s.modality,
            s.backend,
            s.license,
            ", ".join(s.aliases) or "-",
            "yes" if s.embedded else "no",
            human_size(s.size_bytes()),
        )
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=160)  # piped: one line per model, not 80 columns
    console.print(table)


@app.command("licenses")
def licenses(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the licenses as JSON.")] = False,
) -> None:
    """Each model's license, its card, and whether its terms need (and have) acceptance."""
    service = state(ctx).service
    accepted = service.settings.accept_licenses
    rows = [{"id": s.id, "license": s.license, "terms": s.terms or None,
             "served": s.accepted(accepted), "card": s.card or None} for s in service.models()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    for column in ("id", "license", "terms", "served", "card"):
        table.add_column(column, no_wrap=column in ("id", "served"), overflow="fold")
    for r in rows:
        served = "yes" if r["served"] else f"no: accept '{r['terms']}'"
        table.add_row(r["id"], r["license"], r["terms"] or "-", served, r["card"] or "-")
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=200)
    console.print(table)
    pending = sorted({r["terms"] for r in rows if not r["served"]})
    if pending:
        typer.echo(f"\nTo accept: set accept_licenses = {pending!r} in the config file, or "
                   f"OMNIFORGE_ACCEPT_LICENSES={','.join(pending)}, after reading the terms above.")


@app.command("show")
def show(
    ctx: typer.Context,
    model_id: Annotated[str, typer.Argument(metavar="ID", help="Model id or alias.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the spec as JSON.")] = False,
) -> None:
    """Show one model's spec."""
    spec = state(ctx).service.model(model_id)
    data = spec.to_dict()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    data["size"] = human_size(spec.size_bytes())
    width = max(len(k) for k in data)
    for key, value in data.items():
        if isinstance(value, list):
            value = ", ".join(map(str, value)) or "-"
        elif isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        typer.echo(f"{key:<{width}}  {value if value != '' else '-'}")


@app.command("add")
def add(
    ctx: typer.Context,
    source: Annotated[
        Path,
        typer.Option(
            "--source",
            help="The weights: a GGUF file, a Piper .onnx voice (its "
            ".onnx.json beside it), a CTranslate2 Whisper folder, a "
            "sentence-transformers folder, a diffusers folder or single-file "
            "checkpoint, or a transformers vision-language folder.",
            show_default=False,
        ),
    ],
    model_id: Annotated[
        str | None,
        typer.Option("--id", help="Id to call it by (default: the file or folder name).", show_default=False),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            help="Engine: llama-cpp, llama-cpp-vision, piper, faster-whisper, sentence-transformers, diffusers, "
            "diffusers-video, transformers-vlm (default: from the path).",
            show_default=False,
        ),
    ] = None,
    modality: Annotated[
        str | None,
        typer.Option(help="text, speech, transcription, embedding, image, video or vision (default: the backend's).",
                     show_default=False),
    ] = None,
    license: Annotated[str, typer.Option(help="License of the weights (recorded in the catalog).")] = "unknown",
    alias: Annotated[
        list[str] | None, typer.Option("--alias", help="Another name for it (repeatable).", show_default=False)
    ] = None,
    description: Annotated[str, typer.Option(help="One line about it.")] = "",
    task: Annotated[
        list[str] | None,
        typer.Option(
            "--task",
            help="A task it serves (repeatable; default by modality, e.g. chat and completion).",
            show_default=False,
        ),
    ] = None,
    language: Annotated[
        list[str] | None, typer.Option("--language", help="A language it handles (repeatable).", show_default=False)
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            help="Backend option KEY=VALUE (repeatable), e.g. chat_template=plain-dialogue.",
            show_default=False,
        ),
    ] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite a model you added with the same id.")] = False,
) -> None:
    """Add a model from local weights to your catalog (catalog.yaml under home)."""
    path = source.expanduser()
    if not path.exists():
        raise InvalidRequestError(f"model source {source} does not exist", param="source")
    backend = backend or infer_backend(path)
    modality = modality or get_backend(backend).modality
    name = model_id or (path.stem if path.is_file() else path.name)
    spec = ModelSpec(
        id=name.replace(" ", "-"),
        modality=modality,
        backend=backend,
        source=str(path),
        license=license,
        aliases=list(alias or []),
        tasks=list(task or DEFAULT_TASKS.get(modality, [])),
        description=description,
        languages=list(language or []),
        options=_parse_options(option or []),
    )
    spec = state(ctx).service.catalog.add(spec, replace=replace)
    typer.echo(f"added {spec.id} ({spec.modality}, {spec.backend}) from {spec.source}")


@app.command("remove")
def remove(
    ctx: typer.Context,
    model_id: Annotated[str, typer.Argument(metavar="ID", help="Id of a model you added.", show_default=False)],
) -> None:
    """Remove a model you added (its files stay where they are)."""
    spec = state(ctx).service.catalog.remove(model_id)
    typer.echo(f"removed {spec.id}")
