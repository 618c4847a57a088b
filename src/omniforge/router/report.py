"""Usage reports: ledger totals as a terminal table with bars, and as a PNG bar chart."""

from __future__ import annotations

import io
from typing import Any

METRICS = ("usd", "compute_seconds", "requests", "tokens", "energy_wh")
_BLOCKS = " ▏▎▍▌▋▊▉█"


def metric_of(row: dict[str, Any], metric: str) -> float:
    if metric == "tokens":
        return float(row["input_tokens"] + row["output_tokens"])
    return float(row[metric])


def label_of(row: dict[str, Any], groups: list[str]) -> str:
    return " / ".join(str(row.get(g) if row.get(g) is not None else "-") for g in groups)


def _bar(value: float, top: float, width: int = 24) -> str:
    if top <= 0:
        return ""
    eighths = round(value / top * width * 8)
    return "█" * (eighths // 8) + (_BLOCKS[eighths % 8] if eighths % 8 else "")


def table(rows: list[dict[str, Any]], groups: list[str], metric: str = "usd") -> str:
    """One line per group: requests, tokens, compute seconds, USD, Wh, and a bar of `metric`."""
    if not rows:
        return "no usage recorded yet"
    labels = [label_of(r, groups) for r in rows]
    width = max(len(" / ".join(groups)), *(len(label) for label in labels))
    top = max(metric_of(r, metric) for r in rows)
    head = (f"{' / '.join(groups):<{width}}  {'requests':>8}  {'tokens':>9}  {'compute s':>10}  {'USD':>11}  "
            f"{'Wh':>8}  {metric}")
    lines = [head, "-" * len(head)]
    for label, r in zip(labels, rows):
        lines.append(f"{label:<{width}}  {r['requests']:>8}  {r['input_tokens'] + r['output_tokens']:>9}  "
                     f"{r['compute_seconds']:>10.2f}  {r['usd']:>11.6f}  {r['energy_wh']:>8.3f}  "
                     f"{_bar(metric_of(r, metric), top)}")
    total = {k: sum(r[k] for r in rows) for k in ("requests", "input_tokens", "output_tokens", "compute_seconds",
                                                  "usd", "energy_wh")}
    lines.append("-" * len(head))
    lines.append(f"{'total':<{width}}  {total['requests']:>8}  {total['input_tokens'] + total['output_tokens']:>9}  "
                 f"{total['compute_seconds']:>10.2f}  {total['usd']:>11.6f}  {total['energy_wh']:>8.3f}")
    return "\n".join(lines)


def chart_png(rows: list[dict[str, Any]], groups: list[str], metric: str = "usd", title: str | None = None) -> bytes:
    """A horizontal bar chart of `metric` per group, as PNG bytes (Pillow, no plotting library)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=14)
    labels = [label_of(r, groups) for r in rows] or ["no usage"]
    values = [metric_of(r, metric) for r in rows] or [0.0]
    label_w = max(int(font.getlength(label)) for label in labels) + 16
    bar_w, row_h, top_h = 420, 26, 40
    width, height = label_w + bar_w + 140, top_h + row_h * len(labels) + 16
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((8, 10), title or f"{metric} by {' / '.join(groups)}", fill="black", font=font)
    top = max(values) or 1.0
    for i, (label, value) in enumerate(zip(labels, values)):
        y = top_h + i * row_h
        draw.text((8, y + 4), label, fill="black", font=font)
        length = int(bar_w * value / top)
        draw.rectangle((label_w, y + 3, label_w + max(length, 1), y + row_h - 5), fill=(52, 101, 164))
        draw.text((label_w + length + 6, y + 4), f"{value:.6g}", fill="black", font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


__all__ = ["METRICS", "chart_png", "label_of", "metric_of", "table"]
