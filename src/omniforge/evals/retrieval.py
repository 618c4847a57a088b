"""Retrieval measured by recall@k and MRR: questions about a folder's documents against its knowledge base.

The questions file is JSONL (or a JSON list) of {"question": ..., "file": "path/in/folder"} with an
optional "passage": a phrase the right passage contains. The folder's knowledge base is the one
the knowledge-qa recipe uses (brought up to date first, so only changed files are embedded).
recall@k: the share of questions whose file is among the files of the top k passages; with
"passage", passage recall@k asks the same of a passage containing the phrase; MRR is the mean of
1/rank of the first passage from the right file (0 when it is not in the top max(k)).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequestError, NotFoundError

if TYPE_CHECKING:
    from ..pipelines.knowledge import KnowledgeBase
    from ..service import Service


@dataclass
class Question:
    question: str
    file: str
    passage: str | None = None


@dataclass
class Ranked:
    question: str
    file: str
    rank: int | None  # 1-based rank of the first passage from the right file, None if not retrieved
    top: list[str]  # the files of the retrieved passages, best first
    has_phrase: bool = False  # the question names a phrase its passage contains
    passage_rank: int | None = None  # rank of the first passage from the right file containing it


@dataclass
class Report:
    ks: tuple[int, ...]
    questions: list[Ranked] = field(default_factory=list)
    index: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def recall(self, k: int) -> float:
        return sum(q.rank is not None and q.rank <= k for q in self.questions) / max(1, len(self.questions))

    def passage_recall(self, k: int) -> float | None:
        rows = [q for q in self.questions if q.has_phrase]
        if not rows:
            return None
        return sum(q.passage_rank is not None and q.passage_rank <= k for q in rows) / len(rows)

    def mrr(self) -> float:
        return sum(1 / q.rank for q in self.questions if q.rank) / max(1, len(self.questions))

    def to_dict(self) -> dict[str, Any]:
        return {"recall": {str(k): self.recall(k) for k in self.ks},
                "passage_recall": {str(k): self.passage_recall(k) for k in self.ks}, "mrr": self.mrr(),
                "index": self.index, "seconds": round(self.seconds, 2),
                "questions": [asdict(q) for q in self.questions]}


def load_questions(path: Path) -> list[Question]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise NotFoundError(f"no questions file at {path}", param="questions")
    text = path.read_text(encoding="utf-8")
    try:
        rows = json.loads(text) if text.lstrip().startswith("[") else [
            json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError as exc:
        raise InvalidRequestError(f"{path} is not JSONL or a JSON list: {exc}", param="questions") from None
    questions = []
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict) or not isinstance(row.get("question"), str) or not isinstance(
                row.get("file"), str):
            raise InvalidRequestError(f"{path}: question {i} needs 'question' and 'file' text", param="questions")
        phrase = row.get("passage")
        questions.append(Question(row["question"], row["file"].replace("\\", "/"),
                                  phrase if isinstance(phrase, str) and phrase.strip() else None))
    if not questions:
        raise InvalidRequestError(f"{path} holds no questions", param="questions")
    return questions


def score(kb: KnowledgeBase, questions: list[Question], ks: tuple[int, ...] = (1, 3, 5),
          progress: Callable[[int, int], None] | None = None) -> Report:
    """Rank each question's passages in `kb` (already ingested) and record where the right ones are."""
    if not ks or any(k < 1 for k in ks):
        raise InvalidRequestError("k must be positive whole numbers", param="k")
    report = Report(tuple(sorted(set(ks))))
    depth = max(report.ks)
    for i, q in enumerate(questions):
        if progress:
            progress(i, len(questions))
        found = kb.search(q.question, depth)
        rank = next((r for r, p in enumerate(found, 1) if p.file == q.file), None)
        ranked = Ranked(q.question, q.file, rank, [p.file for p in found], has_phrase=q.passage is not None)
        if q.passage is not None:
            phrase = " ".join(q.passage.lower().split())
            ranked.passage_rank = next((r for r, p in enumerate(found, 1)
                                        if p.file == q.file and phrase in " ".join(p.text.lower().split())), None)
        report.questions.append(ranked)
    if progress:
        progress(len(questions), len(questions))
    return report


def evaluate(service: Service, folder: Path, questions: Path, ks: tuple[int, ...] = (1, 3, 5),
             model: str | None = None, progress: Callable[[int, int], None] | None = None) -> Report:
    """Bring `folder`'s knowledge base up to date, then score the questions against it."""
    from ..pipelines.knowledge import KnowledgeBase, default_name

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise NotFoundError(f"no folder at {folder}", param="folder")
    asked = load_questions(questions)
    start = time.perf_counter()
    kb = KnowledgeBase(service, default_name(folder), model)
    index = kb.ingest(folder)
    missing = sorted({q.file for q in asked} - set(kb.manifest().get("files", {})))
    if missing:
        raise InvalidRequestError(f"the questions name files that are not in {folder}: {', '.join(missing[:5])}",
                                  param="questions")
    report = score(kb, asked, ks, progress)
    report.index = {k: index[k] for k in ("name", "files", "chunks", "added", "updated", "removed") if k in index}
    report.seconds = time.perf_counter() - start
    return report


def summary(report: Report) -> str:
    recall = ", ".join(f"recall@{k} {report.recall(k):.3f}" for k in report.ks)
    lines = [f"{len(report.questions)} questions, {report.index.get('chunks', '?')} passages from "
             f"{report.index.get('files', '?')} files: {recall}, MRR {report.mrr():.3f}"]
    passage = [(k, report.passage_recall(k)) for k in report.ks]
    if passage[0][1] is not None:
        lines.append("  right passage: " + ", ".join(f"recall@{k} {v:.3f}" for k, v in passage))
    misses = [q for q in report.questions if q.rank is None or q.rank > 1]
    lines += [f"  miss at 1: {q.question!r} wanted {q.file}, got {', '.join(q.top[:3]) or 'nothing'}"
              for q in misses[:10]]
    return "\n".join(lines)


__all__ = ["Question", "Ranked", "Report", "evaluate", "load_questions", "score", "summary"]
