"""Backups against the real local Postgres: back up, lose the data, restore, run the drill.

A throwaway database is migrated by every service's `migrate` command and given a user, a
ticket with a message and audit entries; destructive tests work on clones of it (CREATE
DATABASE ... TEMPLATE). Every database made here is dropped at the end.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BACKUP_DIR = ROOT / "deploy" / "backup"
SCHEMAS = ("identity", "billing", "provisioning", "tickets", "telegram")
ADMIN = "postgresql://postgres@127.0.0.1:5432"
RUN_ID = secrets.token_hex(4)

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("pg_dump", "pg_restore", "psql")),
    reason="PostgreSQL client tools not installed")

SEED_SQL = """
INSERT INTO identity.users (id, email, password_hash, role, is_blocked, created_at,
                            telegram_linked)
VALUES ('u-drill-1', 'drill@example.com', 'not-a-hash', 'USER', false, now(), false);
INSERT INTO tickets.tickets (id, user_id, subject, status, source, seq, created_at,
                             last_message_at)
VALUES ('t-drill-1', 'u-drill-1', 'VPN does not connect', 'OPEN', 'WEB', 1, now(), now());
INSERT INTO tickets.messages (id, ticket_id, author_role, origin, body, created_at)
VALUES ('m-drill-1', 't-drill-1', 'USER', 'WEB', 'It times out since this morning', now());
"""

# `python -m <svc> migrate` for each service in turn (the same `run_cli` entry point, in one
# process so the shared libraries are imported once), then audit entries written by the
# gateway's own code, so the hash chain is the real one.
SETUP_SNIPPET = """
import asyncio, importlib
from runtime.service import run_cli

for svc in ("gateway", "billing", "provisioner", "tickets", "telegram"):
    run_cli(importlib.import_module(f"{svc}.__main__").definition, ["migrate"])

from gateway.config import Settings
from gateway.service import audit_service
from runtime.db import Database

async def audit():
    db = Database(Settings())
    try:
        for n in range(2):
            async with db.transaction() as s:
                await audit_service.record(
                    s, actor_id="u-drill-1", actor_role="ADMIN", action="user.block",
                    target_type="user", target_id=f"u-{n}", request_id=None,
                    outcome="success", details={"n": n})
    finally:
        await db.dispose()

asyncio.run(audit())
"""


def _url(db: str) -> str:
    return f"{ADMIN}/{db}"


def _psql(db: str, sql: str) -> str:
    result = subprocess.run(
        ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", _url(db), "-c", sql],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _script(name: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BACKUP_DIR / name), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def _drop(*dbs: str) -> None:
    commands = []
    for db in dbs:  # one -c each: DROP DATABASE cannot run in a transaction block
        commands += ["-c", f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           f"WHERE datname = '{db}'", "-c", f'DROP DATABASE IF EXISTS "{db}"']
    result = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d",
                             _url("postgres"), *commands], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


def _exists(db: str) -> bool:
    return _psql("postgres", f"SELECT count(*) FROM pg_database WHERE datname = '{db}'") == "1"


class Databases:
    """Names of the databases this module makes, all dropped at the end."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.source = self.name("")

    def name(self, suffix: str) -> str:
        name = f"vpn_drill_src_{RUN_ID}{suffix}"
        self.names.append(name)
        return name

    def clone(self, suffix: str) -> str:
        name = self.name(suffix)
        _psql("postgres", f'CREATE DATABASE "{name}" TEMPLATE "{self.source}"')
        return name


@pytest.fixture(scope="module")
def dbs():
    dbs = Databases()
    try:
        _psql("postgres", f'CREATE DATABASE "{dbs.source}"')
        env = {**_base_env(), "DATABASE_URL": _url(dbs.source)}
        result = subprocess.run([sys.executable, "-c", SETUP_SNIPPET], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"migrate: {result.stderr[-2000:]}"
        _psql(dbs.source, SEED_SQL)
        yield dbs
    finally:
        _drop(*dbs.names)


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}


@pytest.fixture(scope="module")
def backup(dbs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("backups")
    result = _script("backup.py", "--database-url", _url(dbs.source), "--out-dir", str(out))
    assert result.returncode == 0, result.stderr
    dumps = sorted(out.glob("*.dump"))
    assert len(dumps) == 1
    return dumps[0]


def _counts(db: str) -> dict[str, str]:
    return {table: _psql(db, f"SELECT count(*) FROM {table}")
            for table in ("identity.users", "identity.audit_log", "tickets.tickets",
                          "tickets.messages")}


def test_backup_writes_a_whole_dump_one_dump_per_schema_and_a_manifest(backup):
    manifest = json.loads(backup.with_suffix(".json").read_text())
    for schema in SCHEMAS:
        assert (backup.with_suffix("") / f"{schema}.dump").is_file()
        assert manifest["schemas"][schema]["alembic_version"], f"{schema} has no revision"
    assert set(manifest["sha256"]) == {backup.name, *(f"{backup.stem}/{s}.dump" for s in SCHEMAS)}
    assert manifest["schemas"]["identity"]["rows"] == {"users": 1, "sessions": 0, "audit_log": 2}
    assert manifest["schemas"]["tickets"]["rows"] == {"tickets": 1, "messages": 1}
    assert not list(backup.parent.glob("*.partial"))


def test_restore_refuses_a_database_that_holds_data(dbs, backup):
    before = _counts(dbs.source)
    result = _script("restore.py", str(backup), "--database-url", _url(dbs.source))
    assert result.returncode == 1
    assert "not empty" in result.stderr
    assert _counts(dbs.source) == before


def test_backup_then_drop_the_data_then_restore_brings_every_row_back(dbs, backup):
    db = dbs.clone("_full")
    expected = _counts(db)
    _psql(db, "; ".join(f"DROP SCHEMA {s} CASCADE" for s in SCHEMAS))
    assert _psql(db, "SELECT count(*) FROM pg_namespace WHERE nspname = 'identity'") == "0"

    result = _script("restore.py", str(backup), "--database-url", _url(db))
    assert result.returncode == 0, result.stderr
    assert _counts(db) == expected == {"identity.users": "1", "identity.audit_log": "2",
                                       "tickets.tickets": "1", "tickets.messages": "1"}
    assert _psql(db, "SELECT email FROM identity.users") == "drill@example.com"
    assert _psql(db, "SELECT body FROM tickets.messages") == "It times out since this morning"
    assert _psql(db, "SELECT tableowner FROM pg_tables WHERE schemaname = 'billing' "
                     "AND tablename = 'invoices'") == "billing_svc"

    # --force replaces what is there instead of adding to it.
    result = _script("restore.py", str(backup), "--database-url", _url(db), "--force")
    assert result.returncode == 0, result.stderr
    assert _counts(db) == expected


def test_one_schema_is_restored_alone_and_the_others_are_left_as_they_are(dbs, backup):
    db = dbs.clone("_schema")
    _psql(db, "DROP SCHEMA tickets CASCADE")
    _psql(db, "INSERT INTO identity.users (id, email, password_hash, role, is_blocked, "
              "created_at, telegram_linked) VALUES ('u-after', 'after@example.com', 'x', "
              "'USER', false, now(), false)")

    result = _script("restore.py", str(backup), "--schema", "tickets", "--database-url", _url(db))
    assert result.returncode == 0, result.stderr
    assert _psql(db, "SELECT subject FROM tickets.tickets") == "VPN does not connect"
    assert _psql(db, "SELECT count(*) FROM identity.users") == "2"  # newer row kept

    refused = _script("restore.py", str(backup), "--schema", "tickets", "--database-url", _url(db))
    assert refused.returncode == 1 and "not empty" in refused.stderr

    # A lone whole-database dump (no per-schema files, no manifest) restores one schema too.
    bare = backup.parent.parent / "bare"
    bare.mkdir()
    shutil.copy(backup, bare / backup.name)
    _psql(db, "DROP SCHEMA billing CASCADE")
    result = _script("restore.py", str(bare / backup.name), "--schema", "billing",
                     "--database-url", _url(db))
    assert result.returncode == 0, result.stderr
    assert _psql(db, "SELECT pg_get_userbyid(nspowner) FROM pg_namespace "
                     "WHERE nspname = 'billing'") == "billing_svc"
    assert _psql(db, "SELECT count(*) FROM billing.plans") == "0"


def _drill(backup: Path, dbs: Databases, suffix: str) -> tuple[subprocess.CompletedProcess, str]:
    scratch = dbs.name(suffix)
    result = _script("drill.py", "--backup", str(backup), "--database-url", _url("postgres"),
                     "--scratch-db", scratch)
    return result, scratch


def test_restore_drill_passes_on_a_good_backup_and_drops_its_scratch_database(dbs, backup):
    result, scratch = _drill(backup, dbs, "_drill_ok")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout
    for schema in SCHEMAS:
        assert f"ok    {schema} migrations at head" in result.stdout
    assert "ok    identity.users: 1 rows (backup recorded 1)" in result.stdout
    assert "ok    audit chain verifies" in result.stdout
    assert "foreign keys valid" in result.stdout
    assert not _exists(scratch)


def test_restore_drill_fails_on_a_tampered_dump(dbs, backup, tmp_path):
    copy = tmp_path / backup.name
    shutil.copy(backup, copy)
    shutil.copy(backup.with_suffix(".json"), copy.with_suffix(".json"))
    shutil.copytree(backup.with_suffix(""), copy.with_suffix(""))
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))

    result, scratch = _drill(copy, dbs, "_drill_tampered")
    assert result.returncode == 1
    assert "FAIL  files match the manifest's SHA-256" in result.stdout
    assert not _exists(scratch)


def test_restore_drill_fails_on_a_missing_schema_and_a_broken_audit_chain(dbs, tmp_path):
    db = dbs.clone("_broken")
    _psql(db, "UPDATE identity.audit_log SET outcome = 'refused:403' "
              "WHERE id = (SELECT min(id) FROM identity.audit_log)")
    _psql(db, "DROP SCHEMA tickets CASCADE")
    made = _script("backup.py", "--database-url", _url(db), "--out-dir", str(tmp_path))
    assert made.returncode == 0, made.stderr

    result, scratch = _drill(next(tmp_path.glob("*.dump")), dbs, "_drill_broken")
    assert result.returncode == 1
    assert "FAIL  schema tickets (tickets) restored" in result.stdout
    assert "FAIL  audit chain verifies" in result.stdout
    assert "ok    identity migrations at head" in result.stdout
    assert not _exists(scratch)


def test_restore_drill_never_restores_into_or_drops_an_existing_database(dbs, backup):
    before = _counts(dbs.source)
    result = _script("drill.py", "--backup", str(backup), "--database-url", _url("postgres"),
                     "--scratch-db", dbs.source)
    assert result.returncode == 1
    assert f"FAIL  scratch database {dbs.source} does not exist yet" in result.stdout
    assert _exists(dbs.source) and _counts(dbs.source) == before
