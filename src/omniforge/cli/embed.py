"""`omniforge embed`: embedding vectors of texts, as JSON lines or a short summary."""

from __future__ import annotations

import json
import math
from typing import Annotated

import typer

from ..errors import InvalidRequestError
from .state import read_stdin_text, state, write_out


def _summary(model_id: str, texts: list[str], vectors: list[list[float]]) -> str:
    lines = [f"model {model_id}: {len(vectors)} vector(s) of {len(vectors[0])} dimensions"]
    for text, vec in zip(texts, vectors, strict=True):
        norm = math.sqrt(sum(x * x for x in vec))
        head = ", ".join(f"{x:+.4f}" for x in vec[:4])
        shown = text if len(text) <= 48 else text[:45] + "..."
        lines.append(f"  [{head}, ...]  norm {norm:.3f}  {shown!r}")
    if len(vectors) > 1:
        lines.append("cosine similarity:")
        for i in range(len(vectors)):
            for j in range(i + 1, len(vectors)):
                lines.append(f"  {i + 1} ~ {j + 1}: {_cosine(vectors[i], vectors[j]):.3f}")
    return "\n".join(lines) + "\n"


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


def embed(
    ctx: typer.Context,
    texts: Annotated[
        list[str] | None, typer.Argument(help="Texts to embed; without any, one per line of stdin.", show_default=False)
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Embedding model id, alias or OpenAI name.", show_default=False)
    ] = None,
    summary: Annotated[
        bool,
        typer.Option(
            "--summary",
            help="Print dimensions, a few values, norms and pairwise cosine similarity instead of the vectors.",
        ),
    ] = False,
) -> None:
    """Embed texts; prints one JSON vector per line, in input order."""
    if not texts:
        texts = [line for line in (read_stdin_text() or "").splitlines() if line.strip()]
    if not texts:
        raise InvalidRequestError("nothing to embed: give texts as arguments or lines on stdin", param="input")
    st = state(ctx)
    with st.progress.working(f"embedding {len(texts)} text(s)"):
        spec, result = st.service.embed(texts, model)
    if summary:
        write_out(_summary(spec.id, texts, result.vectors))
        return
    write_out("".join(json.dumps([round(float(x), 7) for x in vec]) + "\n" for vec in result.vectors))
