"""Conversation memory per session for the customer-service chatbot, and its `support` step kind.

Turns live in <home>/pipelines/sessions.db (SQLite, one row per turn, keyed by the pipeline run
that made it, so a run resumed after a crash does not record its turn twice). A reply is grounded
in the knowledge base's passages and in what the customer said earlier in the session; when
neither is close enough to the message (by embedding similarity, not the chat model's judgement)
the bot hands off to a person with a fixed message.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequestError
from ..types import GenerationParams, Message
from .knowledge import THRESHOLD, _check_passages, _normalized, citations, relevant
from .steps import StepContext, register_step

if TYPE_CHECKING:
    from ..service import Service

HANDOFF = ("I'm not sure about that, so I'm passing you to a member of our support team. "
           "They will reply to you here shortly.")
SYSTEM = "You are a friendly customer support assistant. Answer briefly, using only the facts."
EXAMPLE = (  # one worked example: gemma-3-270m ignores facts in the system prompt but follows this pattern
    "Facts:\n- Gift cards can be used online and in shops, and never expire.\n\nCustomer: Do gift cards expire?",
    "No, our gift cards never expire, and you can use them online or in our shops.",
)
HISTORY_TURNS = 6  # earlier turns shown to the chat model (its context is small)
MEMORY_TURNS = 20  # earlier user messages searched for what the customer told us
_SESSION = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS turns (
    session TEXT NOT NULL, seq INTEGER NOT NULL, run_id TEXT, user TEXT NOT NULL, reply TEXT NOT NULL,
    handoff INTEGER NOT NULL, time REAL NOT NULL,
    PRIMARY KEY (session, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS turns_run ON turns (run_id) WHERE run_id IS NOT NULL;
"""


@dataclass
class Turn:
    session: str
    seq: int
    user: str
    reply: str
    handoff: bool
    run_id: str | None = None


class SessionStore:
    """The turns of every session, in one SQLite file; safe to share between threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(str(self.path), timeout=30, isolation_level=None)) as db:
            db.row_factory = sqlite3.Row
            yield db

    def turns(self, session: str, limit: int = 50) -> list[Turn]:
        """The last `limit` turns of `session`, oldest first."""
        _check_session(session)
        with self._db() as db:
            rows = db.execute("SELECT * FROM turns WHERE session=? ORDER BY seq DESC LIMIT ?",
                              (session, int(limit))).fetchall()
        return [_turn(r) for r in reversed(rows)]

    def by_run(self, run_id: str) -> Turn | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM turns WHERE run_id=?", (run_id,)).fetchone()
        return _turn(row) if row else None

    def add(self, session: str, user: str, reply: str, handoff: bool, run_id: str | None = None) -> Turn:
        """Record a turn; a second turn from the same run returns the first instead."""
        _check_session(session)
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                if run_id and (row := db.execute("SELECT * FROM turns WHERE run_id=?", (run_id,)).fetchone()):
                    db.execute("COMMIT")
                    return _turn(row)
                (last,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM turns WHERE session=?", (session,)).fetchone()
                db.execute("INSERT INTO turns (session, seq, run_id, user, reply, handoff, time)"
                           " VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (session, last + 1, run_id, user, reply, int(handoff), time.time()))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return Turn(session, last + 1, user, reply, handoff, run_id)

    def clear(self, session: str) -> int:
        """Forget a session; the number of turns removed."""
        _check_session(session)
        with self._db() as db:
            return db.execute("DELETE FROM turns WHERE session=?", (session,)).rowcount


def _check_session(session: str) -> None:
    if not isinstance(session, str) or not _SESSION.match(session):
        raise InvalidRequestError(f"session {session!r} must be 1-128 letters, digits or '_.:@-'", param="session")


def _turn(row: sqlite3.Row) -> Turn:
    return Turn(row["session"], row["seq"], row["user"], row["reply"], bool(row["handoff"]), row["run_id"])


def sessions(service: Service) -> SessionStore:
    return SessionStore(Path(service.settings.home) / "pipelines" / "sessions.db")


# -- replying -------------------------------------------------------------------------------------
def remembered(service: Service, message: str, history: list[Turn], model: str | None = None,
               threshold: float = THRESHOLD) -> list[tuple[str, float]]:
    """Sentences the customer said earlier that are close to `message`, best first, with scores."""
    said = list(dict.fromkeys(s.strip() for t in history[-MEMORY_TURNS:] for s in re.split(r"(?<=[.!?])\s+", t.user)
                              if len(s.strip()) > 2))
    if not said:
        return []
    import numpy as np

    _, result = service.embed([message, *said], model)
    vectors = np.asarray(_normalized(result.vectors))
    scores = vectors[1:] @ vectors[0]
    return sorted(((s, float(x)) for s, x in zip(said, scores) if x >= threshold), key=lambda p: -p[1])


def reply(service: Service, session: str, message: str, passages: list[dict[str, Any]], *,
          threshold: float = THRESHOLD, handoff: str = HANDOFF, system: str = SYSTEM, model: str | None = None,
          embedding_model: str | None = None, max_tokens: int = 128, temperature: float = 0.0,
          run_id: str | None = None) -> dict[str, Any]:
    """{"text", "handoff", "citations", "turn"}: the bot's reply to `message`, recorded in `session`."""
    if not isinstance(message, str) or not message.strip():
        raise InvalidRequestError("the message is empty", param="message")
    store = sessions(service)
    if run_id and (done := store.by_run(run_id)):  # this run's turn was recorded before a crash
        return _result(done, [])
    message = message.strip()
    history = store.turns(session, MEMORY_TURNS)
    facts = relevant(_check_passages(passages), threshold)
    memory = remembered(service, message, history, embedding_model, threshold)
    if not facts and not memory:
        return _result(store.add(session, message, handoff, True, run_id), [])
    lines = [f"- {' '.join(str(p['text']).split())[:700]}" for p in facts]
    lines += [f"- The customer said earlier: {said}" for said, _ in memory[:3]]
    messages = [Message("system", system), Message("user", EXAMPLE[0]), Message("assistant", EXAMPLE[1])]
    for turn in history[-HISTORY_TURNS:]:
        messages += [Message("user", f"Customer: {turn.user}"), Message("assistant", turn.reply)]
    messages.append(Message("user", "Facts:\n" + "\n".join(lines) + f"\n\nCustomer: {message}"))
    text = service.chat(messages, model, GenerationParams(temperature=float(temperature),
                                                          max_tokens=int(max_tokens)))[0].text.strip()
    if not text:
        return _result(store.add(session, message, handoff, True, run_id), [])
    return _result(store.add(session, message, text, False, run_id), facts)


def _result(turn: Turn, facts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"text": turn.reply, "handoff": turn.handoff, "citations": citations(facts), "turn": turn.seq}


def support_step(service: Service, args: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    threshold = args.get("threshold")
    return reply(service, str(args.get("session") or "default"), str(args["message"]), args["passages"],
                 threshold=THRESHOLD if threshold in (None, "") else float(threshold),
                 handoff=str(args.get("handoff") or HANDOFF), system=str(args.get("system") or SYSTEM),
                 model=args.get("model"), embedding_model=args.get("embedding_model"),
                 max_tokens=int(args.get("max_tokens") or 128), temperature=float(args.get("temperature") or 0.0),
                 run_id=ctx.job_id)


register_step("support", support_step, modality="text",
              params={"message": "text", "passages": "any", "session": "text?", "threshold": "number?",
                      "handoff": "text?", "system": "text?", "model": "text?", "embedding_model": "text?",
                      "max_tokens": "number?", "temperature": "number?"},
              outputs={"text": "text", "handoff": "any", "citations": "any", "turn": "number"},
              description="a customer-service reply grounded in passages and the session's earlier turns, "
                          "or a handoff to a person when unsure")

__all__ = ["HANDOFF", "SessionStore", "Turn", "remembered", "reply", "sessions"]
