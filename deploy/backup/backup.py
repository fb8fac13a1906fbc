"""`make backup`: a consistent logical backup of the database named in DATABASE_URL.

Writes, from one exported snapshot (so every file shows the same moment):
  backups/<stamp>.dump            pg_dump --format=custom of the whole database
  backups/<stamp>/<schema>.dump   one per schema, so a single service can be restored alone
  backups/<stamp>.json            manifest: schemas, Alembic revisions, key-table row counts,
                                  SHA-256 of every file (restore and the drill check them)
Run it as the database owner (DATABASE_URL's role). Usage:
  python deploy/backup/backup.py [--database-url URL] [--out-dir backups] [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pgtools


async def _schemas(conn: asyncpg.Connection) -> list[str]:
    """Every user schema; `public` only when it holds relations."""
    rows = await conn.fetch(
        f"SELECT n.nspname FROM pg_namespace n WHERE n.nspname NOT IN {pgtools.SYSTEM_SCHEMAS} "
        "AND n.nspname NOT LIKE 'pg\\_%' AND (n.nspname <> 'public' OR EXISTS "
        "(SELECT 1 FROM pg_class c WHERE c.relnamespace = n.oid)) ORDER BY n.nspname")
    return [r["nspname"] for r in rows]


async def _has_table(conn: asyncpg.Connection, schema: str, table: str) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL",
                                    f"{pgtools.ident(schema)}.{pgtools.ident(table)}"))


async def _schema_facts(conn: asyncpg.Connection, schema: str) -> dict:
    facts: dict = {"alembic_version": [], "rows": {}}
    if await _has_table(conn, schema, "alembic_version"):
        facts["alembic_version"] = sorted(
            r["version_num"] for r in await conn.fetch(
                f"SELECT version_num FROM {pgtools.ident(schema)}.alembic_version"))
    for table in pgtools.KEY_TABLES.get(schema, []):
        if await _has_table(conn, schema, table):
            facts["rows"][table] = await conn.fetchval(
                f"SELECT count(*) FROM {pgtools.ident(schema)}.{pgtools.ident(table)}")
    return facts


def _new_stamp(out_dir: Path) -> str:
    while True:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        if not (out_dir / f"{stamp}.dump").exists() and not (out_dir / stamp).exists():
            return stamp
        time.sleep(1)


async def _dump(url: str, target: pgtools.Backup, partial: Path, timeout: float) -> dict:
    """Dump every schema and the whole database from one snapshot; the manifest's facts."""
    conninfo, env = pgtools.libpq(url)
    conn = await asyncpg.connect(pgtools.connect_url(url), timeout=10)
    try:
        # Keep this transaction open while pg_dump runs: every dump uses its snapshot.
        tx = conn.transaction(isolation="repeatable_read", readonly=True)
        await tx.start()
        snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
        taken_at = datetime.now(UTC)
        schemas = await _schemas(conn)
        facts = {schema: await _schema_facts(conn, schema) for schema in schemas}
        server_version = await conn.fetchval("SHOW server_version")
        common = ["--format=custom", f"--snapshot={snapshot}", "--no-password"]
        for schema in schemas:
            await pgtools.run_tool(
                ["pg_dump", *common, f"--schema={schema}",
                 f"--file={target.schema_dump(schema)}", f"--dbname={conninfo}"], env, timeout)
        await pgtools.run_tool(["pg_dump", *common, f"--file={partial}", f"--dbname={conninfo}"],
                               env, timeout)
        await tx.commit()
    finally:
        await conn.close()
    version = (await pgtools.run_tool(["pg_dump", "--version"], env, 30)).strip()
    return {"taken_at": taken_at.isoformat(), "database": pgtools.database_name(url),
            "server_version": server_version, "pg_dump": version, "schemas": facts}


def backup(url: str, out_dir: Path, timeout: float) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = _new_stamp(out_dir)
    target = pgtools.Backup(out_dir / f"{stamp}.dump")
    partial = target.full.with_suffix(".dump.partial")
    target.schema_dir.mkdir()
    try:
        facts = asyncio.run(_dump(url, target, partial, timeout))
    except BaseException:
        partial.unlink(missing_ok=True)
        shutil.rmtree(target.schema_dir, ignore_errors=True)
        raise
    files = {f"{stamp}.dump": partial,
             **{f"{stamp}/{s}.dump": target.schema_dump(s) for s in facts["schemas"]}}
    manifest = {"manifest_version": pgtools.MANIFEST_VERSION, "stamp": stamp, **facts,
                "sha256": {rel: pgtools.sha256(path) for rel, path in files.items()}}
    target.manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    partial.rename(target.full)  # last: a `.dump` is only ever a complete backup
    return target.full


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", help="default: $DATABASE_URL")
    parser.add_argument("--out-dir", type=Path, default=pgtools.ROOT / "backups")
    parser.add_argument("--timeout", type=float, default=3600,
                        help="seconds allowed for each pg_dump (default 3600)")
    args = parser.parse_args(argv)
    url = pgtools.database_url(args.database_url)
    try:
        path = backup(url, args.out_dir, args.timeout)
    except (pgtools.ToolError, OSError, asyncpg.PostgresError) as exc:
        sys.stderr.write(f"backup failed: {exc}\n")
        return 1
    manifest = pgtools.Backup(path).manifest() or {}
    sys.stdout.write(f"backup {path} ({', '.join(manifest.get('schemas', {}))})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
