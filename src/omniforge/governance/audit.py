"""The audit log: an append-only, hash-chained record of every request, in SQLite at <home>/audit/audit.db.

Each record carries `seq` (1, 2, ...), `time`, `prev_hash` (the previous record's hash; 64 zeros
for the first) and `hash`: SHA-256 over the canonical JSON (sorted keys, no spaces) of the record's
fields with `seq` and `prev_hash`. Changing, deleting or reordering a stored record therefore breaks
the chain, and `verify()` names the record where it breaks, even when the attacker first drops the
triggers that refuse UPDATE and DELETE.

Retention is the one sanctioned way to delete (`prune(before)`): in one transaction it writes an
*anchor* (the last pruned record's seq and hash, itself hash-chained in the `anchors` table) and
only then deletes the records at or behind it; the DELETE trigger lets through nothing newer than
the latest anchor. `verify()` starts from that anchor. The `head` row (last seq and hash, written
with every append) catches records cut off the end. What no local check can catch is an attacker
who rewrites the whole chain from some point on: keep `export`s elsewhere to witness it.

Commits are durable on their own (WAL with synchronous=FULL): a record `append` returned survives
kill -9 and a power cut. Appends from threads and processes are serialized by an IMMEDIATE
transaction, so there is always exactly one chain.

Record content is metadata only: hashes of request and response bodies, never the bodies.
`model_digest` identifies the exact weights that served a request (SHA-256 of the files, cached
per path, mtime and size in <home>/audit/digests.json).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Self

from ..errors import InvalidRequestError

if TYPE_CHECKING:
    from ..catalog.spec import ModelSpec

GENESIS = "0" * 64  # prev_hash of record 1
REDACTED = "[redacted]"
CHUNK = 2**20  # digests stream files in 1 MB chunks
PRUNE_EVERY = 1000  # appends between retention passes when retention_days is set
BUSY_TIMEOUT_MS = 30_000  # another process holding the write lock: wait this long

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    ts REAL NOT NULL,              -- epoch seconds of `time`, for since/prune
    body TEXT NOT NULL,            -- canonical JSON of the record fields (time included)
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS anchors (
    id INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL,          -- last pruned record
    hash TEXT NOT NULL,            -- its hash: the next record's prev_hash
    time TEXT NOT NULL,            -- when the pruning ran
    prev_anchor TEXT NOT NULL,     -- previous anchor's anchor_hash (GENESIS for the first)
    anchor_hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS records_append_only_update BEFORE UPDATE ON records
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: records cannot be updated'); END;
CREATE TRIGGER IF NOT EXISTS records_append_only_delete BEFORE DELETE ON records
WHEN OLD.seq > COALESCE((SELECT MAX(seq) FROM anchors), 0)
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: only records behind a retention anchor can be deleted (AuditLog.prune)'); END;
CREATE TRIGGER IF NOT EXISTS records_append_in_order BEFORE INSERT ON records
WHEN NEW.seq != COALESCE((SELECT MAX(seq) FROM records), (SELECT MAX(seq) FROM anchors), 0) + 1
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: seq must follow the last record'); END;
CREATE TRIGGER IF NOT EXISTS anchors_no_update BEFORE UPDATE ON anchors
BEGIN SELECT RAISE(ABORT, 'audit anchors cannot be updated'); END;
CREATE TRIGGER IF NOT EXISTS anchors_no_delete BEFORE DELETE ON anchors
BEGIN SELECT RAISE(ABORT, 'audit anchors cannot be deleted'); END;
"""


def canonical(value: Any) -> str:
    """The one JSON text a value hashes as: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def iso_time(value: float | str | datetime | None = None) -> str:
    """UTC ISO 8601 with microseconds and a Z: now, or an epoch / ISO string / datetime."""
    return datetime.fromtimestamp(epoch(value), tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def epoch(value: float | str | datetime | None) -> float:
    """Epoch seconds of now, a number, a datetime, or an ISO date/time (naive means UTC)."""
    if value is None:
        return time.time()
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidRequestError(f"time {value!r} is not an ISO date or date-time (YYYY-MM-DD[THH:MM:SS])",
                                      param="since") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def record_hash(fields: dict[str, Any], seq: int, prev_hash: str) -> str:
    return sha256_hex(canonical({**fields, "seq": seq, "prev_hash": prev_hash}))


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    time: str
    prev_hash: str
    hash: str
    fields: dict[str, Any]  # everything else: request_id, key_id, endpoint, model, hashes, cost ...

    def to_dict(self) -> dict[str, Any]:
        return {**self.fields, "seq": self.seq, "time": self.time, "prev_hash": self.prev_hash, "hash": self.hash}


@dataclass
class VerifyReport:
    ok: bool
    checked: int
    problems: list[str] = field(default_factory=list)
    anchor_seq: int = 0  # verification started after this pruned record


class AuditLog:
    """Append, verify, prune and export the hash-chained audit records of one home."""

    def __init__(self, path: Path | str, retention_days: float | None = None, redact: Iterable[str] = ()) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if retention_days is not None and retention_days <= 0:
            raise InvalidRequestError("audit retention_days must be positive (or unset to keep everything)",
                                      param="retention_days")
        self.retention_days = retention_days
        self.redact = frozenset(redact)
        self._lock = threading.Lock()
        self._appends = 0
        self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a returned append survives kill -9 and power loss
        with self._lock, self._transaction():
            for statement in _statements(SCHEMA):
                self._db.execute(statement)
        if retention_days is not None:
            self.prune_expired()

    @classmethod
    def for_home(cls, home: Path | str, **options: Any) -> AuditLog:
        return cls(Path(home) / "audit" / "audit.db", **options)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: the write lock up front, so reading the last hash and appending are one step."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- writing ------------------------------------------------------------------------------
    def append(self, record: dict[str, Any]) -> AuditRecord:
        """Add one record at the end of the chain (durable when this returns)."""
        fields = self._normalize(record)
        stamp = fields["time"]
        with self._lock, self._transaction() as db:
            seq, prev_hash = self._last(db)
            seq += 1
            digest = record_hash(fields, seq, prev_hash)
            db.execute("INSERT INTO records (seq, ts, body, prev_hash, hash) VALUES (?, ?, ?, ?, ?)",
                       (seq, epoch(stamp), canonical(fields), prev_hash, digest))
            db.execute("INSERT OR REPLACE INTO head (id, seq, hash) VALUES (1, ?, ?)", (seq, digest))
            self._appends += 1
            due = self.retention_days is not None and self._appends % PRUNE_EVERY == 0
        if due:
            self.prune_expired()
        body = {k: v for k, v in fields.items() if k != "time"}
        return AuditRecord(seq, stamp, prev_hash, digest, body)

    def _normalize(self, record: dict[str, Any]) -> dict[str, Any]:
        reserved = {"seq", "prev_hash", "hash"} & set(record)
        if reserved:
            raise InvalidRequestError(f"audit record must not set {', '.join(sorted(reserved))}: append adds them",
                                      param=min(reserved))
        fields = dict(record)
        fields["time"] = iso_time(fields.get("time"))
        params = fields.get("params")
        if isinstance(params, dict) and self.redact:
            fields["params"] = {k: REDACTED if k in self.redact else v for k, v in params.items()}
        return json.loads(canonical(fields))  # exactly what verify will read back

    @staticmethod
    def _last(db: sqlite3.Connection) -> tuple[int, str]:
        row = db.execute("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            row = db.execute("SELECT seq, hash FROM anchors ORDER BY id DESC LIMIT 1").fetchone()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def prune(self, before: float | str | datetime) -> int:
        """Delete the oldest records whose time is before `before`, behind a new anchor; returns how many.

        Only a prefix of the chain goes (up to the first record not older than `before`), so what
        remains still chains from the anchor."""
        cutoff = epoch(before)
        with self._lock, self._transaction() as db:
            first_kept = db.execute("SELECT MIN(seq) FROM records WHERE ts >= ?", (cutoff,)).fetchone()[0]
            if first_kept is None:
                first_kept = (db.execute("SELECT MAX(seq) FROM records").fetchone()[0] or 0) + 1
            last = db.execute("SELECT seq, hash FROM records WHERE seq < ? ORDER BY seq DESC LIMIT 1",
                              (first_kept,)).fetchone()
            if last is None:
                return 0
            prev = db.execute("SELECT anchor_hash FROM anchors ORDER BY id DESC LIMIT 1").fetchone()
            prev_anchor = prev[0] if prev else GENESIS
            stamp = iso_time()
            anchor_hash = sha256_hex(canonical({"seq": last[0], "hash": last[1], "time": stamp,
                                                "prev_anchor": prev_anchor}))
            db.execute("INSERT INTO anchors (seq, hash, time, prev_anchor, anchor_hash) VALUES (?, ?, ?, ?, ?)",
                       (last[0], last[1], stamp, prev_anchor, anchor_hash))
            return db.execute("DELETE FROM records WHERE seq <= ?", (last[0],)).rowcount

    def prune_expired(self) -> int:
        if self.retention_days is None:
            return 0
        return self.prune(time.time() - self.retention_days * 86400)

    # -- reading ------------------------------------------------------------------------------
    def records(self, since: float | str | datetime | None = None) -> Iterator[AuditRecord]:
        """Every stored record in seq order (from `since` on, when given)."""
        query = "SELECT seq, body, prev_hash, hash FROM records"
        args: tuple[Any, ...] = ()
        if since is not None:
            query += " WHERE ts >= ?"
            args = (epoch(since),)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY seq", args).fetchall()
        for seq, body, prev_hash, digest in rows:
            fields = json.loads(body)
            stamp = fields.pop("time", "")
            yield AuditRecord(seq, stamp, prev_hash, digest, fields)

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0])

    def export(self, target: Path | str | IO[str], since: float | str | datetime | None = None) -> int:
        """Write the records as JSON Lines (one record a line, with hash and prev_hash); returns how many."""
        if isinstance(target, (str, Path)):
            with open(target, "w", encoding="utf-8") as out:
                return self.export(out, since)
        count = 0
        for record in self.records(since):
            target.write(canonical(record.to_dict()) + "\n")
            count += 1
        return count

    def verify(self) -> VerifyReport:
        """Recompute every hash and link from the latest anchor on; name each record where the chain breaks."""
        with self._lock:
            rows = self._db.execute("SELECT seq, body, prev_hash, hash FROM records ORDER BY seq").fetchall()
            anchors = self._db.execute("SELECT seq, hash, time, prev_anchor, anchor_hash FROM anchors ORDER BY id"
                                       ).fetchall()
            head = self._db.execute("SELECT seq, hash FROM head WHERE id = 1").fetchone()
        problems = _check_anchors(anchors)
        anchor_seq, expected_prev = (int(anchors[-1][0]), str(anchors[-1][1])) if anchors else (0, GENESIS)
        owner = {digest: seq for seq, _, _, digest in rows}  # who a stray prev_hash belongs to
        expected_seq = anchor_seq + 1
        checked = 0
        for seq, body, prev_hash, digest in rows:
            if seq <= anchor_seq:
                if seq == anchor_seq and digest != expected_prev:
                    problems.append(f"record {seq}: hash does not match the retention anchor (record or anchor edited)")
                continue
            checked += 1
            try:
                fields = json.loads(body)
            except ValueError:
                problems.append(f"record {seq}: body is not JSON (edited)")
                fields = None
            if fields is not None and record_hash(fields, seq, prev_hash) != digest:
                problems.append(f"record {seq}: hash mismatch (record edited)")
            if seq > expected_seq:
                problems.append(f"{_span(expected_seq, seq - 1)} missing (deleted)")
            elif prev_hash != expected_prev:
                if expected_seq == anchor_seq + 1 and anchors:
                    problems.append(f"record {seq}: prev_hash does not match the retention anchor at record "
                                    f"{anchor_seq} (anchor broken or record edited)")
                elif prev_hash in owner and owner[prev_hash] != seq - 1:
                    problems.append(f"record {seq}: chained after record {owner[prev_hash]}, not record {seq - 1} "
                                    "(records reordered)")
                else:
                    problems.append(f"record {seq}: prev_hash does not match record {seq - 1}'s hash "
                                    "(record edited, replaced or reordered)")
            expected_seq, expected_prev = seq + 1, digest
        last_seq = rows[-1][0] if rows else anchor_seq
        if head is not None and head[0] > last_seq:
            problems.append(f"{_span(last_seq + 1, head[0])} missing at the end (deleted)")
        elif head is not None and head[0] == last_seq and rows and head[1] != rows[-1][3]:
            problems.append(f"record {last_seq}: hash differs from the recorded head (last record replaced)")
        elif head is None and rows:
            problems.append("head row missing (tampered): records cut off the end cannot be ruled out")
        return VerifyReport(not problems, checked, problems, anchor_seq)


def _statements(script: str) -> list[str]:
    """Split the schema into statements (triggers contain ';' inside BEGIN ... END)."""
    out, current = [], ""
    for line in script.strip().splitlines():
        current += line + "\n"
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    return out


def _span(first: int, last: int) -> str:
    return f"record {first}" if first == last else f"records {first}-{last}"


def _check_anchors(anchors: list[tuple[Any, ...]]) -> list[str]:
    problems = []
    prev_anchor, prev_seq = GENESIS, 0
    for seq, digest, stamp, prev, anchor_hash in anchors:
        if sha256_hex(canonical({"seq": seq, "hash": digest, "time": stamp, "prev_anchor": prev})) != anchor_hash:
            problems.append(f"retention anchor at record {seq}: hash mismatch (anchor edited)")
        elif prev != prev_anchor:
            problems.append(f"retention anchor at record {seq}: does not chain to the previous anchor "
                            "(anchor deleted or replaced)")
        if seq < prev_seq:
            problems.append(f"retention anchor at record {seq}: behind the previous anchor at record {prev_seq}")
        prev_anchor, prev_seq = anchor_hash, seq
    return problems


# -- model digests ------------------------------------------------------------------------------
class DigestCache:
    """SHA-256 of model files, cached per path + mtime + size in a JSON file (and in memory)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, Any]] | None = None

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            try:
                self._entries = json.loads(self.path.read_text())
            except (OSError, ValueError):
                self._entries = {}
        return self._entries

    def _save(self) -> None:
        from ..storage import write_atomic

        write_atomic(self.path, json.dumps(self._load(), indent=0, sort_keys=True).encode())

    def file(self, path: Path) -> str:
        """The hex SHA-256 of one file, hashed at most once per (mtime, size)."""
        path = Path(path).resolve()
        st = path.stat()
        key = str(path)
        with self._lock:
            hit = self._load().get(key)
        if hit and hit.get("mtime_ns") == st.st_mtime_ns and hit.get("size") == st.st_size:
            return str(hit["sha256"])
        digest = _hash_file(path)
        with self._lock:
            self._load()[key] = {"mtime_ns": st.st_mtime_ns, "size": st.st_size, "sha256": digest}
            self._save()
        return digest

    def tree(self, root: Path) -> str:
        """A file's digest, or for a folder the SHA-256 of its sorted `relative-path digest` lines."""
        root = Path(root)
        if root.is_file():
            return self.file(root)
        if not root.is_dir():
            raise InvalidRequestError(f"model weights not found at {root}: nothing to digest", param="model")
        lines = [f"{f.relative_to(root).as_posix()} {self.file(f)}\n"
                 for f in sorted(root.rglob("*")) if f.is_file()]
        return hashlib.sha256("".join(lines).encode()).hexdigest()


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


_CACHES: dict[Path, DigestCache] = {}
_CACHES_LOCK = threading.Lock()


def digest_cache(store: Path) -> DigestCache:
    """One DigestCache per store file in this process (so concurrent requests share its memory)."""
    store = Path(store)
    with _CACHES_LOCK:
        return _CACHES.setdefault(store, DigestCache(store))


def model_digest(spec: ModelSpec, cache_dir: Path, store: Path | None = None) -> str:
    """The SHA-256 of the weights that serve `spec` (a folder: of its files' digests).

    Cached in `store`, by default <home>/audit/digests.json next to the cache folder <home>/cache."""
    store = store or Path(cache_dir).parent / "audit" / "digests.json"
    return digest_cache(store).tree(spec.local_path(Path(cache_dir)))


__all__ = [
    "GENESIS",
    "AuditLog",
    "AuditRecord",
    "DigestCache",
    "VerifyReport",
    "canonical",
    "model_digest",
    "record_hash",
]
