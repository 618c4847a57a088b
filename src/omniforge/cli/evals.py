"""`omniforge eval humaneval|transcription|retrieval|pii`: models, recipes and the PII guard measured (pass@1, WER, recall@k, PII recall/precision)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .state import state

app = typer.Typer(help="Measure models and recipes on real data.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Measure models and recipes on real data."""  # keeps `humaneval` a subcommand of `app`


def humaneval(
    ctx: typer.Context,
    model: Annotated[
        str | None, typer.Option(help="The text model (default: the default chat model).", show_default=False)
    ] = None,
    n: Annotated[
        int | None, typer.Option(help="The first N problems only (default: all 164).", show_default=False)
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds each completion's tests may run in the sandbox.")] = 10.0,
    max_tokens: Annotated[int, typer.Option(help="Tokens per completion at most.")] = 384,
    max_minutes: Annotated[
        float | None, typer.Option(help="Start no new problem after this many minutes (the report says how many ran).",
                                   show_default=False)
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the full report (every completion) as JSON here.",
                                  show_default=False)
    ] = None,
) -> None:
    """Print HumanEval pass@1: greedy completions, each run with its problem's tests in the sandbox."""
    from ..evals.humaneval import evaluate, save_report, summary

    st = state(ctx)
    with st.progress.steps("HumanEval") as update:
        report = evaluate(st.service, model, n, timeout, max_tokens,
                          progress=lambda done, total, passed: update(done, total),
                          max_seconds=None if max_minutes is None else max_minutes * 60)
    if json_path is not None:
        save_report(report, json_path)
        st.progress.note(f"report written to {json_path}")
    typer.echo(summary(report))


def _report(ctx: typer.Context, report: dict, json_path: Path | None) -> None:
    if json_path is not None:
        from ..storage import write_atomic

        write_atomic(json_path, (json.dumps(report, indent=1, ensure_ascii=False) + "\n").encode())
        state(ctx).progress.note(f"report written to {json_path}")


def transcription(
    ctx: typer.Context,
    data: Annotated[Path, typer.Argument(help="A folder of audio files with NAME.txt (or *.trans.txt) transcripts, "
                                              "or a JSONL manifest of {audio, text}.", show_default=False)],
    model: Annotated[
        str | None, typer.Option(help="The transcription model (default: the default one).", show_default=False)
    ] = None,
    language: Annotated[
        str | None, typer.Option(help="The spoken language (default: detected per file).", show_default=False)
    ] = None,
    n: Annotated[int | None, typer.Option(help="The first N samples only.", show_default=False)] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write every transcript and its errors as JSON here.",
                                  show_default=False)
    ] = None,
) -> None:
    """Print the word (and character) error rate of a transcription model on recordings with transcripts."""
    from ..evals.transcription import evaluate, summary

    st = state(ctx)
    with st.progress.steps("transcribing") as update:
        report = evaluate(st.service, data, model, language, n, progress=update)
    _report(ctx, report.to_dict(), json_path)
    typer.echo(summary(report))


def retrieval(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(help="The documents (its knowledge base is brought up to date).",
                                           show_default=False)],
    questions: Annotated[Path, typer.Argument(help="JSONL of {question, file[, passage]}.", show_default=False)],
    k: Annotated[list[int] | None, typer.Option("--k", help="Cut-offs for recall@k (repeatable; default 1, 3, 5).",
                                                show_default=False)] = None,
    model: Annotated[
        str | None, typer.Option(help="The embedding model (default: the default one).", show_default=False)
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write every question's ranking as JSON here.", show_default=False)
    ] = None,
) -> None:
    """Print recall@k and MRR of the knowledge base of FOLDER on a question set about its files."""
    from ..evals.retrieval import evaluate, summary

    st = state(ctx)
    with st.progress.steps("retrieving") as update:
        report = evaluate(st.service, folder, questions, tuple(k or (1, 3, 5)), model, progress=update)
    _report(ctx, report.to_dict(), json_path)
    typer.echo(summary(report))


def pii(
    ctx: typer.Context,
    n: Annotated[int, typer.Option(help="Labelled texts to build (names, emails, phones, cards, IBANs, addresses, "
                                   "and look-alikes).")] = 500,
    seed: Annotated[int, typer.Option(help="Seed of the labelled set.")] = 0,
    threshold: Annotated[float | None, typer.Option(help="Score threshold (default: the pii_threshold setting).",
                                                    show_default=False)] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the full report (missed and false examples) as JSON here.",
                                  show_default=False)
    ] = None,
) -> None:
    """Print PII redaction recall, precision and F1 per entity on a labelled set built from Faker locales
    (names from locales outside the detector's name lists reported apart)."""
    from ..evals.pii import run_pii_eval, table

    settings = state(ctx).settings()
    result = run_pii_eval(n, seed, threshold=settings.pii_threshold if threshold is None else threshold,
                          entities=settings.pii_entities or None)
    _report(ctx, result, json_path)
    typer.echo(table(result))


def register(eval_app: typer.Typer) -> None:
    """Add `humaneval`, `transcription`, `retrieval` and `pii` to an existing `omniforge eval` app."""
    eval_app.command("humaneval")(humaneval)
    eval_app.command("transcription")(transcription)
    eval_app.command("retrieval")(retrieval)
    eval_app.command("pii")(pii)


register(app)

__all__ = ["app", "humaneval", "pii", "register", "retrieval", "transcription"]
