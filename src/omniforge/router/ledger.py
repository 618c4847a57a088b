"""The usage ledger and budgets: one SQLite row per request, reserved before the work and settled after, checked against budgets.

A request first *reserves* its estimate (in one IMMEDIATE transaction that also sums what its
key or project spent in the budget's period, so two concurrent requests cannot both slip under a
limit), then *settles* the measured amounts into the same row. A row is keyed by the request id:
settling twice changes nothing, so nothing is charged twice. Rows still reserved when a ledger is
opened and whose process is gone belong to requests cut off by a crash: they are marked
`interrupted` and keep their reserved estimate as the charge, so nothing is lost either.

Budgets come from the `budgets` setting, entries like
    key:sk-team-a=1000 requests/day     one API key (given as the key itself or its key id)
    project:web=0.50 usd/month          a project (the `OpenAI-Project` or `X-Omniforge-Project` header)
    *=3600 compute_seconds/day          every key, each on its own
with units requests, tokens, compute_seconds, usd, energy_wh and periods day, month (UTC).
Keys are stored as key ids ("key_" + 12 hex digits of their SHA-256), never as the secret.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import BudgetExceededError, InvalidRequestError

UNITS = ("requests", "tokens", "compute_seconds", "usd", "energy_wh")
PERIODS = ("day", "month")
_BUDGET = re.compile(r"^\s*(?P<scope>\*|key:[^=\s]+|project:[^=\s]+)\s*=\s*(?P<limit>[0-9]*\.?[0-9]+)\s*"
                     r"(?P<unit>[a-z_]+)\s*/\s*(?P<period>[a-z]+)\s*$")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (
    id TEXT PRIMARY KEY,
    ts REAL NOT NULL,
    day TEXT NOT NULL,
    month TEXT NOT NULL,
    key TEXT,
    project TEXT,
    endpoint TEXT,
    model TEXT,
    modality TEXT,
    status TEXT NOT NULL,
    owner INTEGER,
    requests INTEGER NOT NULL DEFAULT 1,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    compute_seconds REAL NOT NULL DEFAULT 0,
    usd REAL NOT NULL DEFAULT 0,
    energy_wh REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS charges_key_day ON charges (key, day);
CREATE INDEX IF NOT EXISTS charges_project_day ON charges (project, day);
"""


def key_id(key: str | None) -> str | None:
    """The id a key is stored and shown under (its secret never is)."""
    if not key:
        return None
    if re.fullmatch(r"key_[0-9a-f]{12}", key):
        return key
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Budget:
    scope: str  # "*", "key:<key id>" or "project:<name>"
    limit: float
    unit: str
    period: str

    def __str__(self) -> str:
        return f"{self.scope} {self.limit:g} {self.unit}/{self.period}"

    def applies(self, key: str | None, project: str | None) -> tuple[str, str] | None:
        """(column, value) this budget sums over for a request by `key` in `project`, or None."""
        if self.scope == "*":
            return ("key", key) if key else None
        kind, _, value = self.scope.partition(":")
        if kind == "key" and key == value:
            return "key", value
        if kind == "project" and project == value:
            return "project", value
        return None


def parse_budgets(entries: list[str]) -> list[Budget]:
    budgets = []
    for entry in entries:
        m = _BUDGET.match(entry)
        if m is None or m["unit"] not in UNITS or m["period"] not in PERIODS:
            raise InvalidRequestError(
                f"budget {entry!r} must look like 'key:KEY=1000 requests/day', 'project:NAME=0.5 usd/month' or "
                f"'*=3600 compute_seconds/day' (units: {', '.join(UNITS)}; periods: day, month)", param="budgets")
        scope = m["scope"]
        if scope.startswith("key:"):
            scope = f"key:{key_id(scope[4:])}"
        budgets.append(Budget(scope, float(m["limit"]), m["unit"], m["period"]))
    return budgets


@dataclass
class Amounts:
    """What a request uses (or is estimated to): the ledger's columns."""

    input_tokens: int = 0
    output_tokens: int = 0
    compute_seconds: float = 0.0
    usd: float = 0.0
    energy_wh: float = 0.0

    def of(self, unit: str) -> float:
        if unit == "requests":
            return 1.0
        if unit == "tokens":
            return float(self.input_tokens + self.output_tokens)
        return float(getattr(self, unit))


def _periods(ts: float) -> tuple[str, str]:
    moment = datetime.fromtimestamp(ts, timezone.utc)
    return moment.strftime("%Y-%m-%d"), moment.strftime("%Y-%m")


class Ledger:
    def __init__(self, path: Path, budgets: list[Budget] | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.budgets = budgets or []
        self._local = threading.local()
        db = self._connect()
        db.executescript(_SCHEMA)
        if "owner" not in {row[1] for row in db.execute("PRAGMA table_info(charges)")}:  # a ledger from before owners
            db.execute("ALTER TABLE charges ADD COLUMN owner INTEGER")
        # Reservations left by a process that died mid-request: charged at their estimate. A live
        # process (a server while the CLI reads the ledger) keeps its own.
        owners = [row[0] for row in db.execute("SELECT DISTINCT owner FROM charges WHERE status = 'reserved'")]
        dead = [o for o in owners if not _alive(o)]
        self.interrupted = sum(db.execute("UPDATE charges SET status = 'interrupted' WHERE status = 'reserved' AND "
                                          "owner IS ?", (o,)).rowcount for o in dead)

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=True)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db = db
        return db

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # -- the two phases of a charge ------------------------------------------------------------
    def reserve(self, request_id: str, estimate: Amounts, *, key: str | None = None, project: str | None = None,
                endpoint: str | None = None, model: str | None = None, modality: str | None = None,
                first: bool = True) -> None:
        """Check the budgets with `estimate` added and hold it, or raise BudgetExceededError.

        A request that leases several models reserves once per lease: `first` (a new row) counts
        the request itself; later reservations add to the same row.
        """
        now = time.time()
        day, month = _periods(now)
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            for budget in self.budgets:
                target = budget.applies(key, project)
                if target is None or (budget.unit == "requests" and not first):
                    continue
                column, value = target
                window = ("day", day) if budget.period == "day" else ("month", month)
                spent = self._spent(db, budget.unit, column, value, window)
                wanted = estimate.of(budget.unit)
                if spent + wanted > budget.limit:
                    raise BudgetExceededError(
                        f"budget {budget} would be exceeded: {spent:.6g} {budget.unit} used this {budget.period}"
                        f", this request needs about {wanted:.6g} more (limit {budget.limit:g})",
                        retry_after=_seconds_to_next(budget.period, now))
            if first:
                db.execute(
                    "INSERT OR IGNORE INTO charges (id, ts, day, month, key, project, endpoint, model, modality, "
                    "status, owner, input_tokens, output_tokens, compute_seconds, usd, energy_wh) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'reserved', ?, ?, ?, ?, ?, ?)",
                    (request_id, now, day, month, key, project, endpoint, model, modality, os.getpid(),
                     estimate.input_tokens,
                     estimate.output_tokens, estimate.compute_seconds, estimate.usd, estimate.energy_wh))
            else:
                db.execute(
                    "UPDATE charges SET input_tokens = input_tokens + ?, output_tokens = output_tokens + ?, "
                    "compute_seconds = compute_seconds + ?, usd = usd + ?, energy_wh = energy_wh + ?, "
                    "model = COALESCE(model, ?), modality = COALESCE(modality, ?) "
                    "WHERE id = ? AND status = 'reserved'",
                    (estimate.input_tokens, estimate.output_tokens, estimate.compute_seconds, estimate.usd,
                     estimate.energy_wh, model, modality, request_id))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def settle(self, request_id: str, used: Amounts, *, model: str | None = None, modality: str | None = None) -> bool:
        """Replace a reservation by what was measured; False if it was settled already (or never reserved)."""
        cur = self._connect().execute(
            "UPDATE charges SET status = 'settled', input_tokens = ?, output_tokens = ?, compute_seconds = ?, "
            "usd = ?, energy_wh = ?, model = COALESCE(?, model), modality = COALESCE(?, modality) "
            "WHERE id = ? AND status = 'reserved'",
            (used.input_tokens, used.output_tokens, used.compute_seconds, used.usd, used.energy_wh, model, modality,
             request_id))
        return cur.rowcount == 1

    @staticmethod
    def _spent(db: sqlite3.Connection, unit: str, column: str, value: str, window: tuple[str, str]) -> float:
        expr = {"requests": "COUNT(*)", "tokens": "SUM(input_tokens + output_tokens)"}.get(unit, f"SUM({unit})")
        row = db.execute(f"SELECT COALESCE({expr}, 0) FROM charges WHERE {column} = ? AND {window[0]} = ?",
                         (value, window[1])).fetchone()
        return float(row[0] or 0)

    # -- reading ----------------------------------------------------------------------------------
    def usage(self, group_by: list[str] | None = None, *, key: str | None = None, since: str | None = None,
              until: str | None = None) -> list[dict[str, Any]]:
        """Totals per group (any of key, project, model, modality, endpoint, day, month), newest day first."""
        groups = group_by or ["day"]
        bad = [g for g in groups if g not in ("key", "project", "model", "modality", "endpoint", "day", "month")]
        if bad:
            raise InvalidRequestError(f"cannot group usage by {', '.join(bad)}; use key, project, model, modality, "
                                      "endpoint, day or month", param="group_by")
        where, args = [], []
        for column, op, value in (("key", "=", key), ("day", ">=", since), ("day", "<=", until)):
            if value is not None:
                where.append(f"{column} {op} ?")
                args.append(value)
        cols = ", ".join(groups)
        sql = (f"SELECT {cols}, COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(compute_seconds), SUM(usd), "
               f"SUM(energy_wh) FROM charges {'WHERE ' + ' AND '.join(where) if where else ''} "
               f"GROUP BY {cols} ORDER BY {cols}")
        rows = []
        for row in self._connect().execute(sql, args):
            n = len(groups)
            rows.append({**dict(zip(groups, row[:n])), "requests": row[n], "input_tokens": row[n + 1] or 0,
                         "output_tokens": row[n + 2] or 0, "compute_seconds": round(row[n + 3] or 0.0, 4),
                         "usd": round(row[n + 4] or 0.0, 8), "energy_wh": round(row[n + 5] or 0.0, 5)})
        return rows

    def charge(self, request_id: str) -> dict[str, Any] | None:
        db = self._connect()
        db.row_factory = sqlite3.Row
        try:
            row = db.execute("SELECT * FROM charges WHERE id = ?", (request_id,)).fetchone()
        finally:
            db.row_factory = None
        return dict(row) if row else None


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _seconds_to_next(period: str, now: float) -> float:
    moment = datetime.fromtimestamp(now, timezone.utc)
    if period == "day":
        nxt = moment.replace(hour=0, minute=0, second=0, microsecond=0).timestamp() + 86400
    else:
        year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
        nxt = datetime(year, month, 1, tzinfo=timezone.utc).timestamp()
    return max(1.0, nxt - now)


__all__ = ["PERIODS", "UNITS", "Amounts", "Budget", "Ledger", "key_id", "parse_budgets"]
