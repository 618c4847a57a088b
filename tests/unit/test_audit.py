"""The audit log: a hash chain that names the record an attacker edited, deleted or moved (even with the
append-only triggers dropped), prunes only behind an anchor, redacts, stays one chain under concurrent
appends, survives kill -9, and exports what it stores; plus model digests and the CLI."""

from __future__ import annotations

import io
import itertools
import json
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from typer.testing import CliRunner

from omniforge.catalog import ModelSpec
from omniforge.cli import audit as audit_cli
from omniforge.governance.audit import GENESIS, AuditLog, DigestCache, model_digest

REPO = Path(__file__).resolve().parents[2]


def _record(i: int, **extra: object) -> dict:
    return {"request_id": f"req_{i}", "key_id": "key_0123456789ab", "project": "p", "endpoint": "/v1/chat/completions",
            "method": "POST", "status": 200, "model": "gemma-3-270m", "model_digest": {"gemma-3-270m": "ab" * 32},
            "params": {"model": "gemma-3-270m", "temperature": 0.2, "max_tokens": 8}, "input_hash": f"{i:064x}",
            "output_hash": f"{i + 1:064x}", "route": None, "policy": [], "cost": {"usd": 1e-6 * i},
            "error": None, **extra}


def _filled(tmp_path: Path, n: int = 10, **options: object) -> AuditLog:
    log = AuditLog(tmp_path / "audit" / "audit.db", **options)
    for i in range(1, n + 1):
        log.append(_record(i))
    return log


def _attacker(log: AuditLog) -> sqlite3.Connection:
    """A direct connection with the append-only triggers dropped, as someone with file access would."""
    db = sqlite3.connect(log.path, isolation_level=None)
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        db.execute(f"DROP TRIGGER {name}")
    return db


def test_append_chains_and_verifies(tmp_path: Path) -> None:
    log = _filled(tmp_path, 5)
    records = list(log.records())
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert records[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(records))
    assert records[2].fields["request_id"] == "req_3" and records[2].time.endswith("Z")
    report = log.verify()
    assert report.ok and report.checked == 5 and report.problems == []


def test_triggers_refuse_update_and_delete(tmp_path: Path) -> None:
    log = _filled(tmp_path, 3)
    db = sqlite3.connect(log.path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE records SET body = '{}' WHERE seq = 2")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM records WHERE seq = 2")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("INSERT INTO records (seq, ts, body, prev_hash, hash) VALUES (9, 0, '{}', '', '')")
    db.close()
    assert log.verify().ok


def test_an_edited_record_is_named(tmp_path: Path) -> None:
    log = _filled(tmp_path)
    db = _attacker(log)
    body = json.loads(db.execute("SELECT body FROM records WHERE seq = 4").fetchone()[0])
    body["status"] = 403
    db.execute("UPDATE records SET body = ? WHERE seq = 4", (json.dumps(body, sort_keys=True),))
    report = log.verify()
    assert not report.ok
    assert report.problems == ["record 4: hash mismatch (record edited)"]


def test_an_edited_record_with_a_recomputed_hash_breaks_the_next_link(tmp_path: Path) -> None:
    from omniforge.governance.audit import canonical, record_hash

    log = _filled(tmp_path)
    db = _attacker(log)
    _seq, body, prev = db.execute("SELECT seq, body, prev_hash FROM records WHERE seq = 6").fetchone()
    fields = json.loads(body) | {"key_id": "key_ffffffffffff"}
    db.execute("UPDATE records SET body = ?, hash = ? WHERE seq = 6", (canonical(fields), record_hash(fields, 6, prev)))
    problems = log.verify().problems
    assert len(problems) == 1 and problems[0].startswith("record 7: prev_hash does not match record 6")


def test_a_deleted_record_is_named(tmp_path: Path) -> None:
    log = _filled(tmp_path)
    _attacker(log).execute("DELETE FROM records WHERE seq IN (5, 6)")
    assert log.verify().problems == ["records 5-6 missing (deleted)"]


def test_records_cut_off_the_end_or_the_start_are_named(tmp_path: Path) -> None:
    log = _filled(tmp_path)
    db = _attacker(log)
    db.execute("DELETE FROM records WHERE seq >= 9")
    assert log.verify().problems == ["records 9-10 missing at the end (deleted)"]
    db.execute("DELETE FROM records WHERE seq <= 2")  # no anchor: not a sanctioned prune
    assert "records 1-2 missing (deleted)" in log.verify().problems


def test_swapped_records_are_named(tmp_path: Path) -> None:
    log = _filled(tmp_path)
    db = _attacker(log)
    three = db.execute("SELECT ts, body, prev_hash, hash FROM records WHERE seq = 3").fetchone()
    four = db.execute("SELECT ts, body, prev_hash, hash FROM records WHERE seq = 4").fetchone()
    db.execute("UPDATE records SET ts = ?, body = ?, prev_hash = ?, hash = ? WHERE seq = 3", four)
    db.execute("UPDATE records SET ts = ?, body = ?, prev_hash = ?, hash = ? WHERE seq = 4", three)
    problems = log.verify().problems
    assert "record 3: chained after record 4, not record 2 (records reordered)" in problems
    assert "record 4: chained after record 2, not record 3 (records reordered)" in problems
    assert "record 3: hash mismatch (record edited)" in problems  # seq is part of the hash too


def test_prune_leaves_an_anchor_that_verify_starts_from(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.db")
    for i in range(1, 7):
        log.append(_record(i, time=1_000_000 + i))  # old records
    for i in range(7, 10):
        log.append(_record(i))
    assert log.prune(time.time() - 86400) == 6
    assert [r.seq for r in log.records()] == [7, 8, 9]
    report = log.verify()
    assert report.ok and report.checked == 3 and report.anchor_seq == 6
    log.append(_record(10))
    assert log.prune(time.time() - 86400) == 0 and log.verify().ok
    with pytest.raises(sqlite3.IntegrityError, match="retention anchor"):  # nothing newer than the anchor
        sqlite3.connect(log.path).execute("DELETE FROM records WHERE seq = 7")


def test_a_broken_anchor_is_named(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.db")
    for i in range(1, 6):
        log.append(_record(i, time=1_000_000 + i))
    log.append(_record(6))
    log.prune(time.time() - 86400)
    db = _attacker(log)
    db.execute("UPDATE anchors SET hash = ?", ("00" * 32,))
    problems = log.verify().problems
    assert "retention anchor at record 5: hash mismatch (anchor edited)" in problems
    assert any(p.startswith("record 6: prev_hash does not match the retention anchor at record 5") for p in problems)


def test_all_records_pruned_then_appending_continues_the_chain(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.db")
    for i in range(1, 4):
        log.append(_record(i, time=1_000_000 + i))
    assert log.prune(time.time()) == 3 and len(log) == 0 and log.verify().ok
    fourth = log.append(_record(4))
    assert fourth.seq == 4 and log.verify().ok


def test_retention_days_prunes_on_open(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.db")
    log.append(_record(1, time=1_000_000))
    log.append(_record(2))
    log.close()
    kept = AuditLog(tmp_path / "audit.db", retention_days=30)
    assert [r.seq for r in kept.records()] == [2] and kept.verify().ok


def test_redacted_params_are_never_stored(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.db", redact=("user", "metadata"))
    rec = log.append(_record(1, params={"model": "m", "user": "alice@example.com", "metadata": {"a": "b"}, "n": 1}))
    assert rec.fields["params"] == {"model": "m", "user": "[redacted]", "metadata": "[redacted]", "n": 1}
    assert b"alice@example.com" not in log.path.read_bytes() + Path(f"{log.path}-wal").read_bytes()
    assert log.verify().ok


def test_concurrent_appends_from_threads_keep_one_chain(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.db")
    with ThreadPoolExecutor(8) as pool:
        seqs = list(pool.map(lambda i: log.append(_record(i)).seq, range(200)))
    assert sorted(seqs) == list(range(1, 201))
    report = log.verify()
    assert report.ok and report.checked == 200


def test_appends_from_two_processes_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    AuditLog(path).close()
    script = ("import sys; from omniforge.governance.audit import AuditLog\n"
              "log = AuditLog(sys.argv[1])\n"
              "for i in range(60): log.append({'request_id': f'{sys.argv[2]}-{i}'})\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path), name], cwd=REPO) for name in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    log = AuditLog(path)
    assert len(log) == 120 and log.verify().ok


def test_export_writes_the_stored_records_as_jsonl(tmp_path: Path) -> None:
    log = _filled(tmp_path, 4)
    out = tmp_path / "audit.jsonl"
    assert log.export(out) == 4
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines == [r.to_dict() for r in log.records()]
    assert all({"seq", "time", "hash", "prev_hash", "input_hash"} <= set(line) for line in lines)
    buffer = io.StringIO()
    assert log.export(buffer, since="2000-01-01") == 4 and buffer.getvalue() == out.read_text()
    assert log.export(io.StringIO(), since="2999-01-01") == 0


KILL_SCRIPT = """
import sys
from omniforge.governance.audit import AuditLog
log = AuditLog(sys.argv[1])
i = 0
while True:
    i += 1
    rec = log.append({"request_id": f"req_{i}", "params": {"n": i}, "status": 200})
    print(rec.seq, flush=True)
"""


def test_every_committed_record_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "audit.db"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(path)], cwd=REPO, stdout=subprocess.PIPE,
                            text=True)
    printed = []
    assert proc.stdout is not None
    while len(printed) < 40:
        line = proc.stdout.readline()
        assert line, "the appending process died early"
        printed.append(int(line))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    printed += [int(line) for line in proc.stdout.read().split()]  # committed before the kill landed
    log = AuditLog(path)
    stored = {r.seq for r in log.records()}
    assert set(printed) <= stored
    report = log.verify()
    assert report.ok, report.problems


def test_model_digest_is_the_files_sha256_and_cached(tmp_path: Path) -> None:
    import hashlib

    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"x" * (3 * 2**20 + 7))
    spec = ModelSpec(id="m", modality="text", backend="llama-cpp", source=str(weights))
    cache_dir = tmp_path / "home" / "cache"
    digest = model_digest(spec, cache_dir)
    assert digest == hashlib.sha256(weights.read_bytes()).hexdigest()
    store = tmp_path / "home" / "audit" / "digests.json"
    assert json.loads(store.read_text())[str(weights.resolve())]["sha256"] == digest
    cache = DigestCache(store)  # a fresh process reads the cache instead of hashing again
    assert cache.file(weights) == digest
    weights.write_bytes(b"y" * 10)  # new size: hashed again
    assert cache.file(weights) == hashlib.sha256(b"y" * 10).hexdigest()

    folder = tmp_path / "hf-model"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "sub" / "w.bin").write_bytes(b"w")
    spec_dir = ModelSpec(id="d", modality="text", backend="transformers", source=str(folder))
    first = model_digest(spec_dir, cache_dir)
    (folder / "sub" / "w.bin").write_bytes(b"v")
    assert model_digest(spec_dir, cache_dir) != first


def test_cli_verify_and_export(tmp_path: Path, _isolated_home: Path) -> None:
    runner = CliRunner()
    log = AuditLog.for_home(_isolated_home)
    for i in range(1, 4):
        log.append(_record(i, time=f"2025-01-0{i}T12:00:00Z"))
    ok = runner.invoke(audit_cli.app, ["verify"])
    assert ok.exit_code == 0 and ok.stdout.strip() == "ok: 3 records, chain intact"
    out = tmp_path / "export.jsonl"
    exported = runner.invoke(audit_cli.app, ["export", str(out), "--since", "2025-01-02"])
    assert exported.exit_code == 0, exported.output
    assert [json.loads(line)["seq"] for line in out.read_text().splitlines()] == [2, 3]
    _attacker(log).execute("DELETE FROM records WHERE seq = 2")
    broken = runner.invoke(audit_cli.app, ["verify"])
    assert broken.exit_code == 1 and broken.stdout.splitlines() == ["record 2 missing (deleted)"]


@pytest.mark.slow
def test_append_rate_and_verify_time_of_10k_records(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.db")
    t0 = time.perf_counter()
    for i in range(200):
        log.append(_record(i))
    rate = 200 / (time.perf_counter() - t0)
    db = _attacker(log)  # fill the rest in one transaction: the fsync per append is not what is measured here
    db.execute("BEGIN")
    prev = db.execute("SELECT hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()[0]
    from omniforge.governance.audit import canonical, iso_time, record_hash

    for seq in range(201, 10_001):
        fields = json.loads(canonical(_record(seq) | {"time": iso_time()}))
        digest = record_hash(fields, seq, prev)
        db.execute("INSERT INTO records (seq, ts, body, prev_hash, hash) VALUES (?, ?, ?, ?, ?)",
                   (seq, time.time(), canonical(fields), prev, digest))
        prev = digest
    db.execute("UPDATE head SET seq = 10000, hash = ?", (prev,))
    db.execute("COMMIT")
    t0 = time.perf_counter()
    report = log.verify()
    seconds = time.perf_counter() - t0
    print(f"append rate {rate:.0f}/s, verify 10k records in {seconds:.2f} s")
    assert report.ok and report.checked == 10_000
    assert rate > 20 and seconds < 10
