"""A retrieval question set nobody here wrote: the installed packages' descriptions, asked for by their summaries.

`python bench/retrieval_set.py OUT [--limit N]` writes OUT/docs/<package>.md (each package's long
description from its metadata, with its one-line summary removed from the text) and
OUT/questions.jsonl ({"question": summary, "file": "<package>.md"}). Then
`omniforge eval retrieval OUT/docs OUT/questions.jsonl` measures how often the knowledge base finds
the right package's description from its summary among all the others.
"""

from __future__ import annotations

import argparse
import json
import re
from importlib import metadata
from pathlib import Path

MIN_DESCRIPTION = 600  # characters: shorter descriptions say little more than the summary
MIN_SUMMARY_WORDS = 4


def build(out: Path, limit: int | None = None) -> tuple[Path, Path, int]:
    docs = out / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    rows, seen = [], set()
    for dist in sorted(metadata.distributions(), key=lambda d: (d.metadata["Name"] or "").lower()):
        name = re.sub(r"[^a-z0-9]+", "-", (dist.metadata["Name"] or "").lower()).strip("-")
        summary = " ".join((dist.metadata["Summary"] or "").split())
        description = dist.metadata.get_payload() or dist.metadata["Description"] or ""
        if not name or name in seen or len(summary.split()) < MIN_SUMMARY_WORDS:
            continue
        description = description.replace(summary, " ")  # the question must not be in its answer verbatim
        if len(description.strip()) < MIN_DESCRIPTION:
            continue
        seen.add(name)
        (docs / f"{name}.md").write_text(description, encoding="utf-8")
        rows.append({"question": summary, "file": f"{name}.md"})
        if limit and len(rows) >= limit:
            break
    questions = out / "questions.jsonl"
    questions.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return docs, questions, len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--limit", type=int, default=None, help="at most this many packages")
    args = parser.parse_args()
    docs, questions, n = build(args.out, args.limit)
    print(f"{n} packages: documents in {docs}, questions in {questions}")
    print(f"next: omniforge eval retrieval {docs} {questions}")


if __name__ == "__main__":
    main()
