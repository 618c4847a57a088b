"""Knowledge bases for grounded Q&A: incremental folder ingest, paragraph chunks, a LanceDB vector index on disk, retrieval, cited answers.

A knowledge base lives in <home>/knowledge/<name>/: `index/` is the LanceDB database (one table,
"chunks": file, passage, text, vector) and `manifest.json` records each file's content hash, so
a second ingest embeds only new and changed files and drops the chunks of deleted ones. Scores
are cosine similarities of the embedding model's vectors; "I don't know" is decided from them,
never by the chat model (a small model answers anything it is asked).

The step kinds `ingest`, `retrieve` and `answer` are registered when this module is imported.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import mimetypes
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequestError, MissingDependencyError, NotFoundError, OmniforgeError
from ..types import GenerationParams, Message
from .steps import StepContext, register_step

if TYPE_CHECKING:
    from ..service import Service

SUFFIXES = (".txt", ".text", ".md", ".markdown", ".rst", ".html", ".htm", ".docx", ".pdf")
CHUNK_TOKENS = 160  # MiniLM reads at most 254 tokens; shorter passages also retrieve more precisely
OVERLAP_TOKENS = 32  # the tail of one chunk opens the next, so a fact cut at a border is still found whole
THRESHOLD = 0.3  # cosine similarity below which a passage is not about the question (measured on MiniLM:
# related question/passage pairs score 0.6-0.8, unrelated ones under 0.2)
MARGIN = 0.15  # passages this far below the best one are left out of the answer and its citations
MAX_CITED = 3
EMBED_BATCH = 64
KEEP_VERSIONS = timedelta(minutes=10)  # old index versions a reader in another thread may still be using
DONT_KNOW = "I don't know: none of the documents in this knowledge base covers that question."
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


# -- chunking -------------------------------------------------------------------------------------
def chunk_text(text: str, count: Callable[[str], int], budget: int = CHUNK_TOKENS,
               overlap: int = OVERLAP_TOKENS) -> list[str]:
    """Passages of at most `budget` tokens, cut at paragraphs (then lines, sentences, words); each
    passage after the first opens with up to `overlap` tokens of the end of the one before."""
    units = [(u, count(u)) for u in _units(text, budget, count)]
    chunks: list[list[tuple[str, int]]] = []
    current: list[tuple[str, int]] = []
    for unit, n in units:
        if current and sum(c for _, c in current) + n + len(current) > budget:
            chunks.append(current)
            tail = _tail(" ".join(u for u, _ in current), overlap, count)
            current = [(tail, count(tail))] if tail and count(tail) + n + 1 <= budget else []
        current.append((unit, n))
    if current:  # it holds at least one unit past the overlap
        chunks.append(current)
    joined = ["\n\n".join(u for u, _ in chunk) for chunk in chunks]
    # Joined text can tokenize longer than its parts counted apart: such a passage is cut again.
    return [piece for chunk in joined for piece in ([chunk] if count(chunk) <= budget else _cut(chunk, budget, count))]


def _cut(text: str, budget: int, count: Callable[[str], int]) -> Iterator[str]:
    """`text` in pieces of at most `budget` tokens, each the longest prefix that fits (for text with no
    usable breaks: a long URL, base64, a table row)."""
    while text:
        if count(text) <= budget:
            yield text
            return
        lo, hi = 1, len(text)  # the longest prefix within budget, by bisection on characters
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count(text[:mid]) <= budget:
                lo = mid
            else:
                hi = mid - 1
        space = text.rfind(" ", 0, lo)
        end = space if space > lo // 2 else lo  # prefer a cut at a space
        if text[:end].strip():
            yield text[:end].strip()
        text = text[end:].strip()


def _units(text: str, budget: int, count: Callable[[str], int]) -> Iterator[str]:
    for block in re.split(r"\n\s*\n", text):
        lines = [block.strip()] if count(block) <= budget else block.split("\n")
        for line in (x.strip() for x in lines):
            if not line:
                continue
            if count(line) <= budget:
                yield line
                continue
            for sentence in re.split(r"(?<=[.!?])\s+", line):
                if count(sentence) <= budget:
                    yield sentence
                    continue
                piece = ""
                for word in sentence.split():
                    if piece and count(f"{piece} {word}") > budget:
                        yield piece
                        piece = word
                    else:
                        piece = f"{piece} {word}".strip()
                    if count(piece) > budget:  # one word longer than a passage
                        *whole, piece = _cut(piece, budget, count)
                        yield from whole
                if piece:
                    yield piece


def _tail(text: str, overlap: int, count: Callable[[str], int]) -> str:
    """The last whole sentences of `text` that fit in `overlap` tokens ("" if not even one does)."""
    sentences = re.split(r"(?<=[.!?])\s+", text.strip())
    tail = ""
    for sentence in reversed(sentences):
        candidate = f"{sentence} {tail}".strip()
        if count(candidate) > overlap:
            break
        tail = candidate
    return tail


# -- the index ------------------------------------------------------------------------------------
@dataclass
class Passage:
    file: str  # path relative to the ingested folder, with '/'
    passage: int  # 1-based position of the chunk in its file
    text: str
    score: float  # cosine similarity to the question

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "passage": self.passage, "score": round(self.score, 4), "text": self.text}


def default_name(folder: Path) -> str:
    """A knowledge base name for a folder: its name plus a hash of its absolute path."""
    folder = Path(folder).expanduser().resolve()
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", folder.name).strip("-")[:40] or "kb"
    return f"{slug}-{hashlib.sha1(str(folder).encode()).hexdigest()[:8]}"


class KnowledgeBase:
    """One knowledge base on disk; `service` embeds text with its embedding model (`model`, or the default)."""

    def __init__(self, service: Service, name: str, model: str | None = None) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidRequestError(f"knowledge base name {name!r} must be 1-64 letters, digits, '.', '_' or '-'",
                                      param="name")
        self.service, self.name = service, name
        self.spec = service.pick(model, "embedding")
        self.root = Path(service.settings.home) / "knowledge" / name
        self._db: Any = None

    # -- storage ---------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def manifest(self) -> dict[str, Any]:
        try:
            return json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}

    def _save_manifest(self, manifest: dict[str, Any]) -> None:
        tmp = self.manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.manifest_path)  # atomic: a crash leaves the old or the new one

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def _connect(self) -> Any:
        if self._db is None:
            try:
                import lancedb
            except ImportError:
                raise MissingDependencyError("knowledge bases need the 'lancedb' package, which is not installed: "
                                             "pip install lancedb", param="name") from None
            self.root.mkdir(parents=True, exist_ok=True)
            self._db = lancedb.connect(str(self.root / "index"))
        return self._db

    def _table(self, dimensions: int | None = None) -> Any:
        """The chunks table (None if there is none yet); created when `dimensions` is given."""
        import pyarrow as pa

        db = self._connect()
        with contextlib.suppress(ValueError, FileNotFoundError):
            return db.open_table("chunks")
        if dimensions is None:
            return None
        schema = pa.schema([pa.field("file", pa.string()), pa.field("passage", pa.int32()),
                            pa.field("text", pa.string()), pa.field("vector", pa.list_(pa.float32(), dimensions))])
        return db.create_table("chunks", schema=schema, exist_ok=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time: a thread lock in this process, a file lock across processes."""
        with _LOCKS_GUARD:
            lock = _LOCKS.setdefault(str(self.root), threading.Lock())
        self.root.mkdir(parents=True, exist_ok=True)
        with lock, open(self.root / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- embedding -------------------------------------------------------------------------
    def token_counter(self) -> tuple[Callable[[str], int], int]:
        """A token counter for the embedding model and the most tokens it reads per input."""
        with self.service.runtime.lease(self.spec) as instance:
            limit = int(getattr(instance, "max_tokens", 254) or 254)
            counter = getattr(instance, "count_tokens", None)
        if counter is None:
            return (lambda s: len(s) // 4 + 1), limit
        return (lambda s: counter([s])[0] if s else 0), limit

    def embed(self, texts: list[str], check: Callable[[], None] | None = None,
              progress: Callable[[int], None] | None = None) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), EMBED_BATCH):
            if check:
                check()
            _, result = self.service.embed(texts[start:start + EMBED_BATCH], self.spec.id)
            vectors += _normalized(result.vectors)
            if progress:
                progress(len(vectors))
        return vectors

    # -- ingest ----------------------------------------------------------------------------
    def ingest(self, folder: Path, *, chunk_tokens: int = CHUNK_TOKENS, overlap_tokens: int = OVERLAP_TOKENS,
               check: Callable[[], None] | None = None,
               progress: Callable[[float, str | None], None] | None = None) -> dict[str, Any]:
        """Bring the index in line with `folder`: embed new and changed files, drop deleted ones.
        Returns counts of files added, updated, removed, unchanged and skipped, and of chunks."""
        folder = Path(folder).expanduser().resolve()
        if not folder.is_dir():
            raise InvalidRequestError(f"no folder at {folder}; give the folder of documents to ingest", param="folder")
        if not 16 <= int(chunk_tokens) or not 0 <= int(overlap_tokens) < int(chunk_tokens):
            raise InvalidRequestError("chunk_tokens must be at least 16 and overlap_tokens below it",
                                      param="chunk_tokens")
        started = time.monotonic()
        report = progress or (lambda fraction, message=None: None)
        with self._locked():
            # 1. What the index was built with; another model, chunking or folder means starting over
            count, limit = self.token_counter()
            old = self.manifest()
            settings = {"model": self.spec.id, "chunk_tokens": min(int(chunk_tokens), limit),
                        "overlap_tokens": int(overlap_tokens), "folder": str(folder)}
            rebuild = not old or {k: old.get(k) for k in settings} != settings
            if rebuild:
                self._connect().drop_table("chunks", ignore_missing=True)
            known: dict[str, Any] = {} if rebuild else dict(old.get("files", {}))
            found = {_relative(p, folder): p for p in _documents(folder)}
            stats: dict[str, Any] = {"added": 0, "updated": 0, "removed": 0, "unchanged": 0, "skipped": []}
            batch = _Batch(self, settings, known)
            # 2. Deleted files lose their chunks
            for rel in sorted(set(known) - set(found)):
                batch.delete(rel)
                known.pop(rel)
                stats["removed"] += 1
            # 3. New and changed files are chunked, then embedded and written in batches across files
            files = sorted(found)
            for i, rel in enumerate(files):
                if check:
                    check()
                report(i / max(len(files), 1), f"reading {rel}")
                data = found[rel].read_bytes()
                digest = hashlib.sha256(data).hexdigest()
                if rel in known and known[rel]["sha256"] == digest:
                    stats["unchanged"] += 1
                    continue
                try:
                    chunks = chunk_text(_extract(data, rel), count, settings["chunk_tokens"], int(overlap_tokens))
                except OmniforgeError as exc:  # one unreadable file does not stop the others
                    stats["skipped"].append({"file": rel, "reason": exc.message})
                    if known.pop(rel, None) is not None:
                        batch.delete(rel)
                    continue
                stats["updated" if rel in known else "added"] += 1
                batch.add(rel, {"sha256": digest, "chunks": len(chunks), "size": len(data)}, chunks, check)
            batch.flush(check)
            self._save_manifest({**settings, "files": known})
            # 4. Compaction: each write made a version; merge them and drop the old ones after a while
            if batch.table is not None and stats["added"] + stats["updated"] + stats["removed"]:
                with contextlib.suppress(Exception):  # housekeeping: the index is complete without it
                    batch.table.optimize(cleanup_older_than=KEEP_VERSIONS)
        report(1.0, None)
        return {"name": self.name, **stats, "files": len(known), "chunks": sum(f["chunks"] for f in known.values()),
                "rebuilt": bool(rebuild and old), "seconds": round(time.monotonic() - started, 3)}

    # -- search ----------------------------------------------------------------------------
    def search(self, question: str, k: int = 4) -> list[Passage]:
        """The `k` passages closest to `question`, best first, with cosine similarity scores."""
        if not isinstance(question, str) or not question.strip():
            raise InvalidRequestError("the question is empty", param="question")
        if not 1 <= int(k) <= 100:
            raise InvalidRequestError("k must be between 1 and 100", param="k")
        manifest = self.manifest()
        if not manifest:
            raise NotFoundError(f"no knowledge base named '{self.name}'; ingest a folder into it first",
                                param="name")
        if manifest.get("model") != self.spec.id:
            raise InvalidRequestError(f"knowledge base '{self.name}' was built with embedding model "
                                      f"'{manifest.get('model')}', not '{self.spec.id}'; ingest it again",
                                      param="model")
        table = self._table()
        if table is None:
            return []  # a folder with no readable text
        vector = self.embed([question.strip()])[0]
        rows = table.search(vector).distance_type("cosine").limit(int(k)).to_list()
        return [Passage(r["file"], int(r["passage"]), r["text"], 1.0 - float(r["_distance"])) for r in rows]


class _Batch:
    """Chunks of several files waiting to be embedded together; the manifest records a file only once
    its chunks are written, so an ingest cut off half way redoes just the files it had not finished."""

    def __init__(self, kb: KnowledgeBase, settings: dict[str, Any], known: dict[str, Any]) -> None:
        self.kb, self.settings, self.known = kb, settings, known
        self.table = kb._table()
        self.pending: list[tuple[str, dict[str, Any], list[str]]] = []

    def delete(self, rel: str) -> None:
        if self.table is not None:
            self.table.delete(f"file = {_quote(rel)}")

    def add(self, rel: str, entry: dict[str, Any], chunks: list[str], check: Callable[[], None] | None) -> None:
        self.pending.append((rel, entry, chunks))
        if sum(len(c) for _, _, c in self.pending) >= EMBED_BATCH:
            self.flush(check)

    def flush(self, check: Callable[[], None] | None) -> None:
        if not self.pending:
            return
        texts = [text for _, _, chunks in self.pending for text in chunks]
        vectors = iter(self.kb.embed(texts, check) if texts else [])
        rows = [{"file": rel, "passage": n + 1, "text": text, "vector": next(vectors)}
                for rel, _, chunks in self.pending for n, text in enumerate(chunks)]
        if self.table is None and rows:
            self.table = self.kb._table(len(rows[0]["vector"]))
        for rel, _, _ in self.pending:
            if rel in self.known:
                self.delete(rel)
        if rows:
            self.table.add(rows)
        self.known.update({rel: entry for rel, entry, _ in self.pending})
        self.kb._save_manifest({**self.settings, "files": self.known})
        self.pending = []


def _normalized(vectors: list[list[float]]) -> list[list[float]]:
    import numpy as np

    arr = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    return (arr / np.where(norms == 0, 1, norms)).tolist()


def _documents(folder: Path) -> Iterator[Path]:
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if any(part.startswith((".", "~$")) for part in rel.parts):  # hidden files, editor lock files
            continue
        if path.is_file() and path.suffix.lower() in SUFFIXES:
            yield path


def _relative(path: Path, folder: Path) -> str:
    return path.relative_to(folder).as_posix()


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _extract(data: bytes, name: str) -> str:
    from .documents import extract_text

    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return extract_text(data, media_type, name)[0]


# -- grounded answers ----------------------------------------------------------------------------
ANSWER_SYSTEM = "Answer the question in one or two sentences using only the notes. Cite notes like [1]."
ANSWER_EXAMPLE = (
    ("Notes:\n[1] The museum opens at 9 am and closes at 5 pm. Entry is free on Sundays.\n"
    "[2] The museum cafe sells sandwiches and tea.\n\nQuestion: When does the museum close?"),
    "The museum closes at 5 pm [1].",
)


def relevant(passages: list[dict[str, Any]], threshold: float = THRESHOLD, margin: float = MARGIN,
             limit: int = MAX_CITED) -> list[dict[str, Any]]:
    """The passages worth answering from: at or above `threshold`, within `margin` of the best, at most `limit`."""
    ranked = sorted((p for p in passages if float(p["score"]) >= threshold), key=lambda p: -float(p["score"]))
    if not ranked:
        return []
    best = float(ranked[0]["score"])
    return [p for p in ranked if float(p["score"]) >= best - margin][:limit]


def citations(passages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"ref": i + 1, "file": p["file"], "passage": p["passage"], "score": round(float(p["score"]), 4)}
            for i, p in enumerate(passages)]


def notes(passages: list[dict[str, Any]], max_chars: int = 900) -> str:
    return "\n".join(f"[{i + 1}] {' '.join(str(p['text']).split())[:max_chars]}" for i, p in enumerate(passages))


def answer(service: Service, question: str, passages: list[dict[str, Any]], *, threshold: float = THRESHOLD,
           model: str | None = None, max_tokens: int = 128, temperature: float = 0.0) -> dict[str, Any]:
    """{"text", "citations", "known"}: an answer from the passages that clear `threshold`, or "I don't know"."""
    if not isinstance(question, str) or not question.strip():
        raise InvalidRequestError("the question is empty", param="question")
    used = relevant(_check_passages(passages), threshold)
    if not used:
        return {"text": DONT_KNOW, "citations": [], "known": False}
    messages = [Message("system", ANSWER_SYSTEM), Message("user", ANSWER_EXAMPLE[0]),
                Message("assistant", ANSWER_EXAMPLE[1]),
                Message("user", f"Notes:\n{notes(used)}\n\nQuestion: {question.strip()}")]
    params = GenerationParams(temperature=float(temperature), max_tokens=int(max_tokens))
    text = service.chat(messages, model, params)[0].text.strip()
    if not text:  # the model said nothing: the best passage is still a grounded answer
        text = f"{' '.join(str(used[0]['text']).split())[:400]} [1]"
    return {"text": text, "citations": citations(used), "known": True}


def _check_passages(passages: Any) -> list[dict[str, Any]]:
    if not isinstance(passages, list) or not all(
            isinstance(p, dict) and {"file", "passage", "score", "text"} <= set(p) for p in passages):
        raise InvalidRequestError("passages must be a list of {file, passage, score, text} from a retrieve step",
                                  param="passages")
    return passages


# -- step kinds -------------------------------------------------------------------------------------
def _kb(service: Service, args: dict[str, Any], folder: Path | None = None) -> KnowledgeBase:
    name = args.get("name") or (default_name(folder) if folder else None)
    if not name:
        raise InvalidRequestError("say which knowledge base: give its name (the 'name' an ingest step returned)",
                                  param="name")
    return KnowledgeBase(service, str(name), args.get("model"))


def ingest_step(service: Service, args: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    folder = Path(str(args["folder"])).expanduser()
    kb = _kb(service, args, folder)
    return kb.ingest(folder, chunk_tokens=int(args.get("chunk_tokens") or CHUNK_TOKENS),
                     overlap_tokens=int(args.get("overlap_tokens", OVERLAP_TOKENS)), check=ctx.check,
                     progress=ctx.progress)


def retrieve_step(service: Service, args: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    found = _kb(service, args).search(str(args["question"]), int(args.get("k") or 4))
    return {"passages": [p.to_dict() for p in found], "top_score": round(found[0].score, 4) if found else 0.0}


def answer_step(service: Service, args: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    threshold = args.get("threshold")
    return answer(service, str(args["question"]), args["passages"],
                  threshold=THRESHOLD if threshold in (None, "") else float(threshold), model=args.get("model"),
                  max_tokens=int(args.get("max_tokens") or 128), temperature=float(args.get("temperature") or 0.0))


register_step("ingest", ingest_step, modality="embedding",
              params={"folder": "text", "name": "text?", "model": "text?", "chunk_tokens": "number?",
                      "overlap_tokens": "number?"},
              outputs={"name": "text", "added": "number", "updated": "number", "removed": "number",
                       "unchanged": "number", "skipped": "any", "files": "number", "chunks": "number",
                       "rebuilt": "any", "seconds": "number"},
              description="bring a folder's knowledge base up to date (only new and changed files are embedded)")
register_step("retrieve", retrieve_step, modality="embedding",
              params={"question": "text", "name": "text", "k": "number?", "model": "text?"},
              outputs={"passages": "any", "top_score": "number"},
              description="the passages of a knowledge base closest to a question, with scores")
register_step("answer", answer_step, modality="text",
              params={"question": "text", "passages": "any", "threshold": "number?", "model": "text?",
                      "max_tokens": "number?", "temperature": "number?"},
              outputs={"text": "text", "citations": "any", "known": "any"},
              description="a grounded answer citing file and passage, or \"I don't know\" when nothing is relevant")

__all__ = ["DONT_KNOW", "THRESHOLD", "KnowledgeBase", "Passage", "answer", "chunk_text", "citations",
           "default_name", "relevant"]
