"""`make restore-drill`: restore the latest backup into a scratch database and smoke-check it.

  python deploy/backup/drill.py [--backup backups/<stamp>.dump] [--backup-dir backups]
                                [--database-url URL] [--scratch-db NAME] [--keep]

Checks, each printed as `ok` or `FAIL`:
- the files match the manifest's SHA-256 and the dump restores (one transaction);
- every service's schema is there, owned by its role, and its Alembic version table is at the
  head revision of services/<svc>/src/<svc>/migrations;
- the key tables are readable and hold the row counts the manifest recorded;
- every foreign key is validated and has no orphan rows;
- the gateway's audit chain verifies (`python -m gateway verify-audit` against the scratch db).
Then the scratch database is dropped (unless --keep). Exit status 1 if anything failed.
Service roles are cluster-wide: the drill uses the ones the cluster has (<SVC>_DB_ROLE and
_DB_PASSWORD from the environment, as the services do).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pgtools
import restore

DEFAULT_ROLES = {svc: f"{svc}_svc" for svc in pgtools.SERVICE_SCHEMAS}


class Report:
    def __init__(self) -> None:
        self.failures = 0

    def check(self, ok: bool, what: str) -> bool:
        if not ok:
            self.failures += 1
        sys.stdout.write(f"{'ok  ' if ok else 'FAIL'}  {what}\n")
        sys.stdout.flush()
        return ok


def migration_heads(service: str) -> set[str]:
    from alembic.script import ScriptDirectory

    path = pgtools.ROOT / "services" / service / "src" / service / "migrations"
    return set(ScriptDirectory(str(path)).get_heads())


async def _check_schemas(conn: asyncpg.Connection, report: Report) -> None:
    for service, schema in pgtools.SERVICE_SCHEMAS.items():
        owner = await conn.fetchval(
            "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = $1", schema)
        if not report.check(owner is not None, f"schema {schema} ({service}) restored"):
            continue
        role = os.environ.get(f"{service.upper()}_DB_ROLE", DEFAULT_ROLES[service])
        foreign = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = $1 AND tableowner <> $2",
            schema, role)
        report.check(owner == role and not foreign,
                     f"schema {schema} and its tables owned by {role}"
                     + (f" (not: {', '.join(r['tablename'] for r in foreign)})" if foreign else ""))
        heads = migration_heads(service)
        versions: set[str] = set()
        if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{schema}.alembic_version"):
            versions = {r["version_num"] for r in await conn.fetch(
                f"SELECT version_num FROM {pgtools.ident(schema)}.alembic_version")}
        report.check(versions == heads, f"{schema} migrations at head {sorted(heads)} "
                                        f"(restored: {sorted(versions) or 'none'})")


async def _check_rows(conn: asyncpg.Connection, manifest: dict | None, report: Report) -> None:
    recorded = (manifest or {}).get("schemas", {})
    for schema, tables in pgtools.KEY_TABLES.items():
        for table in tables:
            name = f"{pgtools.ident(schema)}.{pgtools.ident(table)}"
            try:
                count = await conn.fetchval(f"SELECT count(*) FROM {name}")
            except asyncpg.PostgresError as exc:
                report.check(False, f"{schema}.{table} readable ({type(exc).__name__})")
                continue
            expected = recorded.get(schema, {}).get("rows", {}).get(table)
            if expected is None:
                report.check(True, f"{schema}.{table} readable: {count} rows")
            else:
                report.check(count == expected,
                             f"{schema}.{table}: {count} rows (backup recorded {expected})")


async def _check_foreign_keys(conn: asyncpg.Connection, report: Report) -> None:
    schemas = list(pgtools.SERVICE_SCHEMAS.values())
    fks = await conn.fetch(
        """
        SELECT c.conname, c.convalidated, c.conrelid::regclass::text AS child,
               c.confrelid::regclass::text AS parent,
               array(SELECT quote_ident(attname) FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
                     JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n
                     ORDER BY k.i) AS child_cols,
               array(SELECT quote_ident(attname) FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
                     JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n
                     ORDER BY k.i) AS parent_cols
        FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
        WHERE c.contype = 'f' AND n.nspname = ANY($1::text[])
        ORDER BY 1
        """, schemas)
    orphans_total = 0
    for fk in fks:
        not_null = " AND ".join(f"ch.{col} IS NOT NULL" for col in fk["child_cols"])
        join = " AND ".join(f"p.{pc} = ch.{cc}"
                            for cc, pc in zip(fk["child_cols"], fk["parent_cols"], strict=True))
        orphans = await conn.fetchval(
            f"SELECT count(*) FROM {fk['child']} ch WHERE {not_null} "
            f"AND NOT EXISTS (SELECT 1 FROM {fk['parent']} p WHERE {join})")
        orphans_total += orphans
        if orphans or not fk["convalidated"]:
            report.check(False, f"foreign key {fk['conname']} on {fk['child']}: "
                                f"{orphans} orphan rows, validated={fk['convalidated']}")
    report.check(orphans_total == 0 and all(fk["convalidated"] for fk in fks),
                 f"{len(fks)} foreign keys valid")


async def _verify_audit(url: str, timeout: float, report: Report) -> None:
    env = {**os.environ, "DATABASE_URL": url}
    try:
        returncode, out, _ = await pgtools.run_process(
            [sys.executable, "-m", "gateway", "verify-audit"], env, timeout, cwd=pgtools.ROOT,
            merge_stderr=True)
    except TimeoutError:
        report.check(False, f"audit chain: verify-audit timed out after {timeout:.0f}s")
        return
    last = out.decode(errors="replace").strip().splitlines()[-1:] or [""]
    report.check(returncode == 0, f"audit chain verifies (gateway verify-audit: {last[0]})")


async def _database_exists(admin_url: str, name: str) -> bool:
    conn = await asyncpg.connect(pgtools.connect_url(admin_url), timeout=10)
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await conn.close()


async def _drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(pgtools.connect_url(admin_url), timeout=10)
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
        await conn.execute(f"DROP DATABASE IF EXISTS {pgtools.ident(name)}")
    finally:
        await conn.close()


async def drill(backup: pgtools.Backup, url: str, scratch: str, keep: bool,
                timeout: float) -> int:
    report = Report()
    manifest = backup.manifest()
    sys.stdout.write(f"restore drill: {backup.full} -> scratch database {scratch}\n")
    if manifest is None:
        sys.stdout.write("note  no manifest beside the dump: checksums and row counts unchecked\n")
    else:
        bad = backup.verify_checksums()
        if not report.check(not bad, "files match the manifest's SHA-256" + (
                f" (tampered, truncated or missing: {', '.join(bad)})" if bad else "")):
            sys.stdout.write("restore drill FAILED (the backup is damaged)\n")
            return 1
    scratch_url = pgtools.with_database(url, scratch)
    admin_url = pgtools.with_database(url, "postgres")
    if await _database_exists(admin_url, scratch):  # never restore into (and drop) a real one
        report.check(False, f"scratch database {scratch} does not exist yet")
        return 1
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            try:
                await restore.restore(backup.full, scratch_url, timeout=timeout)
            except (restore.RestoreError, pgtools.ToolError) as exc:
                report.check(False, f"restore: {exc}")
                return 1
            report.check(True, f"restored in {time.monotonic() - started:.1f}s (RTO of this "
                               "size)")
            if manifest:
                age = datetime.now(UTC) - datetime.fromisoformat(manifest["taken_at"])
                sys.stdout.write(f"note  snapshot taken {manifest['taken_at']} "
                                 f"({age.total_seconds() / 3600:.1f} h ago: the RPO now)\n")
            conn = await asyncpg.connect(pgtools.connect_url(scratch_url), timeout=10)
            try:
                await _check_schemas(conn, report)
                await _check_rows(conn, manifest, report)
                await _check_foreign_keys(conn, report)
            finally:
                await conn.close()
            await _verify_audit(scratch_url, min(timeout, 300), report)
    except TimeoutError:
        report.check(False, f"drill did not finish within {timeout:.0f}s")
    finally:
        if keep:
            sys.stdout.write(f"note  kept scratch database {scratch}\n")
        else:
            await _drop_database(admin_url, scratch)
    sys.stdout.write(f"restore drill {'FAILED' if report.failures else 'passed'}"
                     f" ({report.failures} failed check(s))\n")
    return 1 if report.failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backup", type=Path, help="a backup (default: the latest one)")
    parser.add_argument("--backup-dir", type=Path, default=pgtools.ROOT / "backups")
    parser.add_argument("--database-url",
                        help="cluster to restore into; its database name is not used "
                             "(default: $DATABASE_URL)")
    parser.add_argument("--scratch-db", help="name of the scratch database (default: random)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds (default 3600)")
    args = parser.parse_args(argv)
    backup = (pgtools.backup_of(args.backup) if args.backup
              else pgtools.latest_backup(args.backup_dir))
    if backup is None or not backup.full.is_file():
        sys.stderr.write(f"no backup found ({args.backup or args.backup_dir}); "
                         "run `make backup` first\n")
        return 1
    scratch = args.scratch_db or (
        f"vpn_drill_{datetime.now(UTC):%Y%m%d%H%M%S}_{secrets.token_hex(3)}")
    url = pgtools.database_url(args.database_url)
    try:
        return asyncio.run(drill(backup, url, scratch, args.keep, args.timeout))
    except (OSError, asyncpg.PostgresError) as exc:
        sys.stderr.write(f"restore drill failed: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
