"""`make restore BACKUP=...`: restore a backup into a database, whole or one schema.

  python deploy/backup/restore.py BACKUP [--schema NAME] [--database-url URL] [--force]

BACKUP is `backups/<stamp>.dump` (or `backups/<stamp>/<schema>.dump`). With --schema only that
schema is restored, from the backup's per-schema dump. The target database (DATABASE_URL's,
created if missing) must not already hold what is restored: a non-empty database (or schema)
is refused unless --force, which replaces the restored schemas. The replacement runs in one
transaction: if anything fails, the database is left as it was. The service roles must exist
(roles are cluster-wide: run `python -m <service> bootstrap` on a new cluster first). Files are
checked against the backup's manifest (SHA-256) before anything is touched.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pgtools

SCHEMA_ENTRY = re.compile(r"^\d+; \d+ \d+ SCHEMA - (\S+) (\S+)$", re.M)
OWNER = re.compile(r"\bOWNER TO (\"?[\w$]+\"?);")


class RestoreError(RuntimeError):
    """The restore was refused or failed; the message says why."""


@dataclass
class Plan:
    dump: Path
    schemas: dict[str, str]  # schema -> owner, as the dump creates them
    only_schema: str | None = None
    create_first: list[str] = field(default_factory=list)  # schemas the dump does not create


async def _dump_contents(dump: Path, env: dict[str, str], timeout: float) -> tuple[dict, set]:
    listing = await pgtools.run_tool(["pg_restore", "--list", str(dump)], env, timeout)
    schemas = dict(SCHEMA_ENTRY.findall(listing))
    ddl = await pgtools.run_tool(["pg_restore", "--schema-only", "--file=-", str(dump)], env,
                                 timeout)
    owners = {o.strip('"') for o in OWNER.findall(ddl)}
    return schemas, owners


async def plan_restore(backup_path: Path, schema: str | None, env: dict[str, str],
                       timeout: float) -> tuple[Plan, set[str]]:
    backup = pgtools.backup_of(backup_path)
    dump = backup_path
    if schema and backup_path == backup.full and backup.schema_dump(schema).exists():
        dump = backup.schema_dump(schema)
    if not dump.is_file():
        raise RestoreError(f"no such backup file: {dump}")
    bad = backup.verify_checksums(only=[dump])
    if bad:
        raise RestoreError(f"checksum mismatch (tampered or truncated): {', '.join(bad)}")
    schemas, owners = await _dump_contents(dump, env, timeout)
    if schema is None and dump != backup.full and len(schemas) == 1:
        schema = next(iter(schemas))  # a per-schema file given directly
    plan = Plan(dump=dump, schemas=schemas, only_schema=schema)
    if schema:
        if schema not in schemas:
            raise RestoreError(f"the backup has no schema {schema!r}")
        plan.schemas = {schema: schemas[schema]}
        if dump == backup.full:
            plan.create_first = [schema]  # pg_restore --schema does not emit CREATE SCHEMA
    return plan, owners


async def _relations(conn: asyncpg.Connection, schema: str | None = None) -> int:
    sql = (f"SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
           f"WHERE n.nspname NOT IN {pgtools.SYSTEM_SCHEMAS} AND n.nspname NOT LIKE 'pg\\_%'")
    if schema is None:
        return await conn.fetchval(sql)
    return await conn.fetchval(sql + " AND n.nspname = $1", schema)


async def ensure_database(url: str) -> None:
    name = pgtools.database_name(url)
    conn = await asyncpg.connect(pgtools.connect_url(pgtools.with_database(url, "postgres")),
                                 timeout=10)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f"CREATE DATABASE {pgtools.ident(name)}")
    finally:
        await conn.close()


async def _prefix_sql(url: str, plan: Plan, owners: set[str], force: bool) -> str:
    """Checks the target and returns the SQL to run before the dump, in its transaction."""
    conn = await asyncpg.connect(pgtools.connect_url(url), timeout=10)
    try:
        existing_roles = {r["rolname"] for r in await conn.fetch("SELECT rolname FROM pg_roles")}
        missing = sorted(owners - existing_roles)
        if missing:
            raise RestoreError(
                f"roles missing on this cluster: {', '.join(missing)} (create them first: "
                "`python -m <service> bootstrap` for each service)")
        if plan.only_schema is None and not force and await _relations(conn):
            raise RestoreError(f"database {pgtools.database_name(url)!r} is not empty "
                               "(use --force to replace the schemas in the backup)")
        statements = []
        for schema, owner in plan.schemas.items():
            if schema == "public":
                continue
            exists = await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema)
            if exists and await _relations(conn, schema) and not force:
                raise RestoreError(f"schema {schema!r} is not empty (use --force to replace it)")
            if exists:  # empty (e.g. just bootstrapped), or --force
                statements.append(f"DROP SCHEMA {pgtools.ident(schema)} CASCADE;")
            if schema in plan.create_first:
                statements.append(f"CREATE SCHEMA {pgtools.ident(schema)} "
                                  f"AUTHORIZATION {pgtools.ident(owner)};")
        return "\n".join(statements) + "\n"
    finally:
        await conn.close()


async def _pipe(plan: Plan, url: str, prefix: str, timeout: float) -> None:
    """pg_restore's SQL, after `prefix`, into psql as one transaction that stops at any error."""
    conninfo, env = pgtools.libpq(url)
    restore_argv = ["pg_restore", "--file=-", "--no-password"]
    if plan.create_first:  # one schema out of a whole-database dump
        restore_argv.append(f"--schema={plan.only_schema}")
    producer = await asyncio.create_subprocess_exec(
        *restore_argv, str(plan.dump), env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    consumer = await asyncio.create_subprocess_exec(
        "psql", "-X", "-q", "--no-password", "--single-transaction", "-v", "ON_ERROR_STOP=1",
        f"--dbname={conninfo}", env=env, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)

    async def feed() -> None:
        assert producer.stdout is not None and consumer.stdin is not None
        try:
            consumer.stdin.write(prefix.encode())
            while chunk := await producer.stdout.read(1 << 16):
                consumer.stdin.write(chunk)
                await consumer.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # psql stopped at an error; its stderr says which
        finally:
            consumer.stdin.close()

    async def run() -> tuple[bytes, bytes]:
        assert producer.stderr is not None and consumer.stderr is not None
        _, restore_err, psql_err = await asyncio.gather(
            feed(), producer.stderr.read(), consumer.stderr.read())
        await asyncio.gather(producer.wait(), consumer.wait())
        return restore_err, psql_err

    try:
        restore_err, psql_err = await asyncio.wait_for(run(), timeout)
    except TimeoutError:
        for proc in (producer, consumer):
            if proc.returncode is None:
                proc.kill()
        raise RestoreError(f"restore timed out after {timeout:.0f}s (rolled back)") from None
    if producer.returncode != 0:
        raise RestoreError(f"pg_restore failed (rolled back): {restore_err.decode()[-2000:]}")
    if consumer.returncode != 0:
        raise RestoreError(f"psql failed (rolled back): {psql_err.decode()[-2000:]}")


async def restore(backup_path: Path, url: str, schema: str | None = None, force: bool = False,
                  timeout: float = 3600) -> Plan:
    _, env = pgtools.libpq(url)
    plan, owners = await plan_restore(backup_path, schema, env, timeout)
    await ensure_database(url)
    prefix = await _prefix_sql(url, plan, owners, force)
    await _pipe(plan, url, prefix, timeout)
    return plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("backup", type=Path, help="backups/<stamp>.dump")
    parser.add_argument("--schema", help="restore only this schema (e.g. billing)")
    parser.add_argument("--database-url", help="target database (default: $DATABASE_URL)")
    parser.add_argument("--force", action="store_true",
                        help="replace the restored schemas even if they hold data")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds (default 3600)")
    args = parser.parse_args(argv)
    url = pgtools.database_url(args.database_url)
    try:
        plan = asyncio.run(restore(args.backup, url, args.schema, args.force, args.timeout))
    except (RestoreError, pgtools.ToolError, OSError, asyncpg.PostgresError) as exc:
        sys.stderr.write(f"restore refused or failed: {exc}\n")
        return 1
    sys.stdout.write(f"restored {plan.dump} into {pgtools.database_name(url)} "
                     f"({', '.join(s for s in plan.schemas if s != 'public')})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
