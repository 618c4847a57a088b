"""`omniforge verify FILE`: a file's provenance: C2PA manifest validity, signer, model, AI-generated, watermark."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from .state import state, write_out


def _lines(report: dict[str, Any]) -> list[str]:
    if "text_watermark" in report:
        d = report["text_watermark"]
        return [f"text watermark: {'found' if d['watermarked'] else 'not found'} (z {d['z']:.2f}, "
                f"{d['green']}/{d['scored']} tokens green, p {d['p_value']:.2g}; model {report['model']}, "
                f"key {report['key_id']})"]
    if not report["manifest"]:
        lines = ["manifest: none"]
    else:
        verdict = "valid, trusted" if report["trusted"] else "valid, signer not trusted here" if report["valid"] \
            else f"INVALID ({report['state']})"
        signer = report["signer"] or {}
        lines = [f"manifest: {verdict}",
                 f"signer: {signer.get('common_name')} (issuer {signer.get('issuer')}, {signer.get('alg')})",
                 f"generator: {report['claim_generator']}",
                 f"model: {report['model']}",
                 f"ai-generated: {'yes' if report['ai_generated'] else 'no'} ({report['digital_source_type']})"]
        lines += [f"failure: {f['code']}: {f['explanation']}" for f in report["failures"]]
    wm = report.get("watermark")
    if wm is not None:
        if wm.get("found"):
            match = {True: "matches the manifest's model", False: "does NOT match the manifest's model",
                     None: "no manifest model to compare"}[wm.get("model_match")]
            lines.append(f"watermark: found (model hash {wm['model_hash']}, {match})")
        else:
            lines.append("watermark: not found" + (f" ({wm['error']})" if wm.get("error") else ""))
    return lines


def verify(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The image, audio, video or text file to check.", show_default=False)],
    model: Annotated[str | None, typer.Option("--model", "-m", help="For a text file: the model whose vocabulary "
                                              "the watermark used (default: the default chat model).",
                                              show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check a file's provenance: its signed C2PA manifest and, for images, the invisible watermark; for a
    text file, the statistical text watermark (z-score)."""
    from ..governance.provenance import verify as verify_bytes
    from ..governance.textmark import as_text, verify_text

    data = file.read_bytes()
    text = as_text(data)
    if text is not None:
        service = state(ctx).service
        report = verify_text(text, service.catalog.resolve(model, "text"), service.settings)
    else:
        report = verify_bytes(data, settings=state(ctx).settings())
    write_out(json.dumps(report, indent=2) + "\n" if as_json else "\n".join(_lines(report)) + "\n")
