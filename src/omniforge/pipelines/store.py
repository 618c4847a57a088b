"""The pipeline job store: jobs, their steps, progress events and the artifact index, in one SQLite file.

One connection per store, guarded by a lock, in WAL mode, so worker threads, the server and a
CLI progress bar can share it. Each store instance is an "owner": a job it queues or runs carries
its token and process id. Opening a store marks the queued and running jobs of owners that are
gone (a dead process, or a closed store in this one) as "interrupted", to be resumed or failed.
It knows nothing about recipes or models.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidRequestError, NotFoundError

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
TERMINAL = ("succeeded", "failed", "cancelled")
_UPDATABLE = ("status", "error", "progress", "outputs")
_LIVE_OWNERS: set[str] = set()  # tokens of the stores open in this process
_LIVE_LOCK = threading.Lock()

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, recipe TEXT NOT NULL, recipe_source TEXT, inputs TEXT NOT NULL,
    status TEXT NOT NULL, error TEXT, progress REAL NOT NULL DEFAULT 0, outputs TEXT,
    cancel INTEGER NOT NULL DEFAULT 0, owner TEXT, pid INTEGER,
    created REAL NOT NULL, updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
CREATE TABLE IF NOT EXISTS steps (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE, name TEXT NOT NULL,
    status TEXT NOT NULL, output TEXT, error TEXT, started REAL, finished REAL,
    PRIMARY KEY (job_id, name)
);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE, seq INTEGER NOT NULL,
    kind TEXT NOT NULL, data TEXT NOT NULL, time REAL NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE TABLE IF NOT EXISTS artifacts (
    sha256 TEXT PRIMARY KEY, media_type TEXT NOT NULL, size INTEGER NOT NULL, name TEXT,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS job_artifacts (
    job_id TEXT NOT NULL, sha256 TEXT NOT NULL REFERENCES artifacts (sha256),
    PRIMARY KEY (job_id, sha256)
);
"""


@dataclass
class Job:
    id: str
    recipe: str
    recipe_source: str | None  # the YAML file the recipe came from, when it came from one
    inputs: dict[str, Any]
    status: str
    error: str | None
    progress: float
    outputs: dict[str, Any] | None
    created: float
    updated: float

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def new_job_id() -> str:
    return f"run_{secrets.token_hex(12)}"


class PipelineStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.owner = secrets.token_hex(8)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        with _LIVE_LOCK:
            _LIVE_OWNERS.add(self.owner)
        self.interrupted = self._mark_orphans()

    # -- plumbing ----------------------------------------------------------------------------
    def _tx(self) -> _Transaction:
        return _Transaction(self._db, self._lock)

    def close(self) -> None:
        with _LIVE_LOCK:
            _LIVE_OWNERS.discard(self.owner)
        with self._lock:
            self._db.close()

    def _mark_orphans(self) -> list[str]:
        """Jobs queued or running under an owner that is gone become "interrupted"."""
        me = os.getpid()
        with self._tx() as db:
            rows = db.execute("SELECT id, owner, pid FROM jobs WHERE status IN ('queued', 'running')").fetchall()
            with _LIVE_LOCK:
                live = set(_LIVE_OWNERS)
            gone = [r["id"] for r in rows
                    if (r["pid"] == me and r["owner"] not in live) or (r["pid"] != me and not _pid_alive(r["pid"]))]
            now = time.time()
            for job_id in gone:
                db.execute("UPDATE jobs SET status='interrupted', updated=? WHERE id=?", (now, job_id))
                db.execute("UPDATE steps SET status='interrupted', finished=? WHERE job_id=? AND status='running'",
                           (now, job_id))
                self._event(db, job_id, "interrupted", {"reason": "the process running this job stopped"})
        return gone

    # -- jobs --------------------------------------------------------------------------------
    def create_job(self, recipe: str, inputs: dict[str, Any], recipe_source: str | None = None,
                   job_id: str | None = None) -> Job:
        job_id = job_id or new_job_id()
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT INTO jobs (id, recipe, recipe_source, inputs, status, progress, owner, pid, created, updated)"
                " VALUES (?, ?, ?, ?, 'queued', 0, ?, ?, ?, ?)",
                (job_id, recipe, recipe_source, json.dumps(inputs), self.owner, os.getpid(), now, now),
            )
        return self.get_job(job_id)

    def get_job(self, job_id: str) -> Job:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no pipeline run with id '{job_id}'", param="run_id")
        return _job(row)

    def list_jobs(self, status: str | None = None, recipe: str | None = None, limit: int = 50) -> list[Job]:
        """Newest first."""
        where, args = [], []
        if status:
            where.append("status=?")
            args.append(status)
        if recipe:
            where.append("recipe=?")
            args.append(recipe)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY created DESC, id LIMIT ?", (*args, limit)).fetchall()
        return [_job(r) for r in rows]

    def update_job(self, job_id: str, **fields: Any) -> Job:
        """Set status, error, progress or outputs; queueing or running a job makes this store its owner."""
        bad = set(fields) - set(_UPDATABLE)
        if bad:
            raise InvalidRequestError(f"cannot update job field(s) {', '.join(sorted(bad))}", param="fields")
        if "status" in fields and fields["status"] not in STATUSES:
            raise InvalidRequestError(f"status must be one of {', '.join(STATUSES)}", param="status")
        if "outputs" in fields:
            fields["outputs"] = json.dumps(fields["outputs"])
        if fields.get("status") in ("queued", "running"):
            fields.update(owner=self.owner, pid=os.getpid())
        fields["updated"] = time.time()
        sets = ", ".join(f"{k}=?" for k in fields)
        with self._tx() as db:
            cur = db.execute(f"UPDATE jobs SET {sets} WHERE id=?", (*fields.values(), job_id))
            if cur.rowcount == 0:
                raise NotFoundError(f"no pipeline run with id '{job_id}'", param="run_id")
        return self.get_job(job_id)

    def delete_job(self, job_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM job_artifacts WHERE job_id=?", (job_id,))
            db.execute("DELETE FROM jobs WHERE id=?", (job_id,))

    def request_cancel(self, job_id: str) -> Job:
        with self._tx() as db:
            if db.execute("UPDATE jobs SET cancel=1 WHERE id=?", (job_id,)).rowcount == 0:
                raise NotFoundError(f"no pipeline run with id '{job_id}'", param="run_id")
        return self.get_job(job_id)

    def cancel_requested(self, job_id: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT cancel FROM jobs WHERE id=?", (job_id,)).fetchone()
        return bool(row and row["cancel"])

    # -- steps -------------------------------------------------------------------------------
    def start_step(self, job_id: str, name: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO steps (job_id, name, status, started) VALUES (?, ?, 'running', ?)"
                " ON CONFLICT (job_id, name) DO UPDATE SET status='running', output=NULL, error=NULL,"
                " started=excluded.started, finished=NULL",
                (job_id, name, time.time()),
            )

    def finish_step(self, job_id: str, name: str, output: dict[str, Any]) -> None:
        self._end_step(job_id, name, "succeeded", json.dumps(output), None)

    def fail_step(self, job_id: str, name: str, error: str, status: str = "failed") -> None:
        self._end_step(job_id, name, status, None, error)

    def _end_step(self, job_id: str, name: str, status: str, output: str | None, error: str | None) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO steps (job_id, name, status, output, error, started, finished)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, name) DO UPDATE SET status=excluded.status,"
                " output=excluded.output, error=excluded.error, finished=excluded.finished",
                (job_id, name, status, output, error, time.time(), time.time()),
            )

    def finished_steps(self, job_id: str) -> dict[str, dict[str, Any]]:
        """{step name: output} of the steps that succeeded."""
        with self._lock:
            rows = self._db.execute(
                "SELECT name, output FROM steps WHERE job_id=? AND status='succeeded'", (job_id,)
            ).fetchall()
        return {r["name"]: json.loads(r["output"]) for r in rows}

    def steps(self, job_id: str) -> list[dict[str, Any]]:
        """Every recorded step of a job, in the order they started."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM steps WHERE job_id=? ORDER BY started, name", (job_id,)
            ).fetchall()
        return [{**dict(r), "output": json.loads(r["output"]) if r["output"] else None} for r in rows]

    # -- events ------------------------------------------------------------------------------
    def add_event(self, job_id: str, kind: str, data: dict[str, Any] | None = None) -> int:
        """Append an event; returns its sequence number (1, 2, ... per job)."""
        with self._tx() as db:
            return self._event(db, job_id, kind, data or {})

    @staticmethod
    def _event(db: sqlite3.Connection, job_id: str, kind: str, data: dict[str, Any]) -> int:
        (last,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE job_id=?", (job_id,)).fetchone()
        db.execute("INSERT INTO events (job_id, seq, kind, data, time) VALUES (?, ?, ?, ?, ?)",
                   (job_id, last + 1, kind, json.dumps(data), time.time()))
        return int(last + 1)

    def events(self, job_id: str, after_seq: int = 0) -> list[dict[str, Any]]:
        """Events after `after_seq`, oldest first: {seq, kind, data, time}."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, kind, data, time FROM events WHERE job_id=? AND seq>? ORDER BY seq", (job_id, after_seq)
            ).fetchall()
        return [{"seq": r["seq"], "kind": r["kind"], "data": json.loads(r["data"]), "time": r["time"]} for r in rows]

    # -- artifact index ----------------------------------------------------------------------
    def index_artifact(self, sha256: str, media_type: str, size: int, name: str | None,
                       job_id: str | None = None) -> dict[str, Any]:
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO artifacts (sha256, media_type, size, name, created)"
                       " VALUES (?, ?, ?, ?, ?)", (sha256, media_type, size, name, time.time()))
            if job_id:
                db.execute("INSERT OR IGNORE INTO job_artifacts (job_id, sha256) VALUES (?, ?)", (job_id, sha256))
        return self.artifact(sha256)  # type: ignore[return-value]

    def artifact(self, sha256: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM artifacts WHERE sha256=?", (sha256,)).fetchone()
        return dict(row) if row else None

    def job_artifacts(self, job_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT a.* FROM artifacts a JOIN job_artifacts j ON a.sha256=j.sha256 WHERE j.job_id=?"
                " ORDER BY a.created", (job_id,)
            ).fetchall()
        return [dict(r) for r in rows]


class _Transaction:
    """`with store._tx() as db:` runs the block in one IMMEDIATE transaction under the store's lock."""

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock) -> None:
        self._db, self._lock = db, lock

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        return self._db

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        try:
            self._db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self._lock.release()


def _job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"], recipe=row["recipe"], recipe_source=row["recipe_source"], inputs=json.loads(row["inputs"]),
        status=row["status"], error=row["error"], progress=row["progress"],
        outputs=json.loads(row["outputs"]) if row["outputs"] else None,
        created=row["created"], updated=row["updated"],
    )
