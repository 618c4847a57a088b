"""API keys: the store (<home>/keys.db, only SHA-256 hashes), their scopes, and per-key rate limits.

A key is "of-" + 32 random url-safe characters, shown once at creation. The database keeps its
SHA-256 hash, an id ("key_" + the hash's first 12 hex digits: the same id router/ledger.key_id
gives the secret, so usage rows and budgets line up) and the last 4 characters for display.
Scopes: models (ids, shell patterns like "whisper-*", or "*"), modalities, endpoint path prefixes
and requests / tokens per minute (0 = unlimited). Keys from settings.api_keys stay valid with
every scope (an in-memory "admin" record). The RateLimiter is in memory, per process: a sliding
60-second window per key.

It knows nothing about HTTP: server/auth.py checks endpoints and requests per minute with it, and
the meter calls `check_lease` for models, modalities and tokens per minute.
"""

from __future__ import annotations

import collections
import contextlib
import fnmatch
import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidRequestError, NotFoundError, PermissionDeniedError, RateLimitError

KEY_PREFIX = "of-"
SECRET_CHARS = 32
MODALITIES = ("text", "speech", "transcription", "embedding", "image", "video", "vision")
WINDOW_S = 60.0
ANY = ("*",)
PII_MODES = ("", "redact", "off")  # per key: the setting decides, always redact before the model, never

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    last4 TEXT NOT NULL,
    created REAL NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    models TEXT NOT NULL,
    modalities TEXT NOT NULL,
    endpoints TEXT NOT NULL,
    rpm INTEGER NOT NULL DEFAULT 0,
    tpm INTEGER NOT NULL DEFAULT 0,
    pii TEXT NOT NULL DEFAULT ''
)
"""


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def id_of_hash(digest: str) -> str:
    return "key_" + digest[:12]


def _match_prefix(path: str, prefix: str) -> bool:
    """"/v1/chat" covers "/v1/chat" and "/v1/chat/completions", not "/v1/chatty"."""
    if prefix == "*":
        return True
    prefix = prefix.rstrip("/") or "/"
    return path == prefix or path.startswith(prefix if prefix.endswith("/") else prefix + "/")


@dataclass(frozen=True)
class KeyRecord:
    """One key's public facts and scopes (never its secret)."""

    id: str
    name: str
    last4: str
    created: float
    revoked: bool = False
    models: tuple[str, ...] = ANY
    modalities: tuple[str, ...] = ANY
    endpoints: tuple[str, ...] = ANY
    rpm: int = 0  # requests per minute, 0 = unlimited
    tpm: int = 0  # tokens per minute, 0 = unlimited
    pii: str = ""  # "redact": personal data redacted before the model; "off": never; "": the setting decides
    source: str = "store"  # "store" or "settings" (settings.api_keys: every scope)

    @property
    def display(self) -> str:
        return f"{KEY_PREFIX}...{self.last4}"

    def allows_endpoint(self, path: str) -> bool:
        return any(_match_prefix(path, p) for p in self.endpoints)

    def allows(self, model_id: str, modality: str) -> bool:
        model_ok = any(m == "*" or fnmatch.fnmatchcase(model_id, m) for m in self.models)
        return model_ok and ("*" in self.modalities or modality in self.modalities)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("models", "modalities", "endpoints"):
            d[k] = list(d[k])
        return d


def admin_record(secret: str) -> KeyRecord:
    """The in-memory record of a key from settings.api_keys: every model, modality and endpoint."""
    return KeyRecord(id=id_of_hash(hash_secret(secret)), name="admin", last4=secret[-4:], created=0.0,
                     source="settings")


def _scope_list(values: Iterable[str] | str | None, param: str, allowed: Sequence[str] | None = None
                ) -> tuple[str, ...]:
    if values is None:
        return ANY
    if isinstance(values, str):
        values = values.split(",")
    out = tuple(dict.fromkeys(v.strip() for v in values if v and v.strip()))
    if not out:
        raise InvalidRequestError(f"{param} is empty: give at least one value, or '*' for all", param=param)
    if "*" in out:
        return ANY
    if allowed is not None:
        bad = [v for v in out if v not in allowed]
        if bad:
            raise InvalidRequestError(f"{param}: unknown {', '.join(bad)}; choose from {', '.join(allowed)} or '*'",
                                      param=param)
    if param == "endpoints":
        bad = [v for v in out if not v.startswith("/")]
        if bad:
            raise InvalidRequestError(f"endpoints are path prefixes starting with '/' (like /v1/chat): "
                                      f"{', '.join(bad)}", param=param)
    return out


def _limit(value: int, param: str) -> int:
    if not isinstance(value, int) or value < 0:
        raise InvalidRequestError(f"{param} must be a whole number >= 0 (0 = unlimited), not {value!r}", param=param)
    return value


def store_has_keys(home: str | Path, active_only: bool = True) -> bool:
    """Whether <home>/keys.db holds keys (without creating it)."""
    path = Path(home) / "keys.db"
    if not path.exists():
        return False
    store = KeyStore(path)
    try:
        return store.has_keys(active_only=active_only)
    finally:
        store.close()


class KeyStore:
    """API keys in SQLite (WAL). Thread-safe; every call reads the file, so a revocation made by
    `omniforge keys revoke` reaches a running server at its next request."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(keys)")}
        if "pii" not in columns:  # a keys.db from before per-key PII modes
            with contextlib.suppress(sqlite3.OperationalError):  # another process added it first
                self._db.execute("ALTER TABLE keys ADD COLUMN pii TEXT NOT NULL DEFAULT ''")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    @staticmethod
    def _record(row: Sequence[Any]) -> KeyRecord:
        id_, name, last4, created, revoked, models, modalities, endpoints, rpm, tpm, pii = row
        return KeyRecord(id_, name, last4, created, bool(revoked), tuple(json.loads(models)),
                         tuple(json.loads(modalities)), tuple(json.loads(endpoints)), rpm, tpm, pii or "")

    _COLUMNS = "id, name, last4, created, revoked, models, modalities, endpoints, rpm, tpm, pii"

    def create(self, name: str, *, models: Iterable[str] | str | None = None,
               modalities: Iterable[str] | str | None = None, endpoints: Iterable[str] | str | None = None,
               rpm: int = 0, tpm: int = 0, pii: str = "") -> tuple[str, KeyRecord]:
        """A new key: (its secret, shown only now; its record)."""
        name = (name or "").strip()
        if not name:
            raise InvalidRequestError("a key needs a name (who or what uses it)", param="name")
        scopes = (_scope_list(models, "models"), _scope_list(modalities, "modalities", MODALITIES),
                  _scope_list(endpoints, "endpoints"))
        rpm, tpm = _limit(rpm, "rpm"), _limit(tpm, "tpm")
        if pii not in PII_MODES:
            raise InvalidRequestError(f"pii must be redact or off (or empty for the server's setting), not {pii!r}",
                                      param="pii")
        if self._rows("SELECT 1 FROM keys WHERE name = ? AND revoked = 0", (name,)):
            raise InvalidRequestError(f"an active key is already named {name!r}: revoke it or choose another name",
                                      param="name")
        secret = KEY_PREFIX + secrets.token_urlsafe(SECRET_CHARS)[:SECRET_CHARS]
        digest = hash_secret(secret)
        record = KeyRecord(id_of_hash(digest), name, secret[-4:], time.time(), False, *scopes, rpm, tpm, pii)
        with self._lock:
            self._db.execute(
                "INSERT INTO keys (id, hash, name, last4, created, revoked, models, modalities, endpoints, rpm, tpm, "
                "pii) VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?)",
                (record.id, digest, name, record.last4, record.created, json.dumps(record.models),
                 json.dumps(record.modalities), json.dumps(record.endpoints), rpm, tpm, pii))
        return secret, record

    def list(self, include_revoked: bool = True) -> list[KeyRecord]:
        where = "" if include_revoked else " WHERE revoked = 0"
        return [self._record(r) for r in self._rows(f"SELECT {self._COLUMNS} FROM keys{where} ORDER BY created")]

    def has_keys(self, active_only: bool = True) -> bool:
        where = " WHERE revoked = 0" if active_only else ""
        return bool(self._rows(f"SELECT 1 FROM keys{where} LIMIT 1"))

    def revoke(self, id_or_name: str) -> KeyRecord:
        """Revoke the key with this id, or the one active key with this name."""
        rows = self._rows(f"SELECT {self._COLUMNS} FROM keys WHERE id = ?", (id_or_name,))
        if not rows:
            rows = self._rows(f"SELECT {self._COLUMNS} FROM keys WHERE name = ? AND revoked = 0", (id_or_name,))
        if not rows:
            raise NotFoundError(f"no key with id or active name {id_or_name!r} (see `omniforge keys list`)",
                                param="key")
        record = self._record(rows[0])
        with self._lock:
            self._db.execute("UPDATE keys SET revoked = 1 WHERE id = ?", (record.id,))
        return KeyRecord(**{**asdict(record), "revoked": True})

    def lookup(self, secret: str) -> KeyRecord | None:
        """The active key whose hash matches `secret` (compared in constant time), else None."""
        if not secret.startswith(KEY_PREFIX):
            return None
        digest = hash_secret(secret)
        rows = self._rows(f"SELECT hash, {self._COLUMNS} FROM keys WHERE id = ?", (id_of_hash(digest),))
        for stored, *row in rows:
            if hmac.compare_digest(stored.encode(), digest.encode()):
                record = self._record(row)
                return None if record.revoked else record
        return None


class RateLimiter:
    """Requests and tokens per key over a sliding 60-second window, in memory and thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, window_s: float = WINDOW_S) -> None:
        self.clock = clock
        self.window = window_s
        self._lock = threading.Lock()
        self._events: dict[tuple[str, str], collections.deque[tuple[float, int]]] = {}

    def _take(self, kind: str, key_id: str, amount: int, limit: int, what: str) -> None:
        if limit <= 0 or amount <= 0:
            return
        if amount > limit:
            raise RateLimitError(f"this request needs {amount} {what}, more than the key's limit of {limit} {what} "
                                 f"per minute; split it or ask for a higher limit", retry_after=self.window)
        now = self.clock()
        with self._lock:
            events = self._events.setdefault((kind, key_id), collections.deque())
            while events and events[0][0] <= now - self.window:
                events.popleft()
            used = sum(n for _, n in events)
            if used + amount <= limit:
                events.append((now, amount))
                return
            freed, retry = used + amount - limit, self.window  # wait until enough old events leave the window
            for t, n in events:
                freed -= n
                if freed <= 0:
                    retry = t + self.window - now
                    break
        raise RateLimitError(f"Rate limit reached for key {key_id}: {limit} {what} per minute. "
                             f"Try again in {retry:.1f} s.", retry_after=max(retry, 0.001))

    def take_request(self, key_id: str, rpm: int) -> None:
        """Count one request; raises RateLimitError (retry_after in seconds) over `rpm`."""
        self._take("requests", key_id, 1, rpm, "requests")

    def take_tokens(self, key_id: str, n: int, tpm: int) -> None:
        """Count `n` tokens; raises RateLimitError (retry_after in seconds) over `tpm`."""
        self._take("tokens", key_id, n, tpm, "tokens")


def check_lease(record: KeyRecord | None, spec_id: str, modality: str, tokens: int,
                limiter: RateLimiter | None) -> None:
    """Called by the meter when a request leases a model: 403 outside the key's model or modality
    scope, 429 over its tokens per minute. No record (CLI, Python API, keys off): nothing to check."""
    if record is None:
        return
    if not record.allows(spec_id, modality):
        raise PermissionDeniedError(
            f"API key {record.name!r} ({record.id}) may not use model {spec_id!r} ({modality}): it is scoped to "
            f"models {', '.join(record.models)} and modalities {', '.join(record.modalities)}", param="model")
    if limiter is not None and record.tpm:
        limiter.take_tokens(record.id, tokens, record.tpm)


__all__ = ["KEY_PREFIX", "MODALITIES", "KeyRecord", "KeyStore", "RateLimiter", "admin_record", "check_lease",
           "hash_secret"]
