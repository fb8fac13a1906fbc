"""Schema/role bootstrap and Alembic migrations per service (version table inside its schema)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import create_async_engine

from runtime.settings import ServiceSettings


def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"unsafe identifier {name!r}")
    return f'"{name}"'


async def bootstrap(settings: ServiceSettings) -> None:
    """Create the service's role and schema (idempotent); the role may use only its schema."""
    engine = create_async_engine(settings.admin_dsn(), isolation_level="AUTOCOMMIT")
    role, schema = _ident(settings.db_role), _ident(settings.schema)
    try:
        async with engine.connect() as conn:
            # One bootstrap at a time: CREATE ROLE is not safe to run concurrently.
            await conn.execute(sa.text("SELECT pg_advisory_lock(4242)"))
            try:
                exists = await conn.scalar(
                    sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": settings.db_role}
                )
                pw = settings.db_password.replace("'", "''")
                if not exists:
                    await conn.execute(sa.text(f"CREATE ROLE {role} LOGIN PASSWORD '{pw}'"))
                else:
                    await conn.execute(sa.text(f"ALTER ROLE {role} LOGIN PASSWORD '{pw}'"))
                await conn.execute(
                    sa.text(f"CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {role}"))
                await conn.execute(sa.text(f"ALTER SCHEMA {schema} OWNER TO {role}"))
                await conn.execute(sa.text(f"REVOKE ALL ON SCHEMA public FROM {role}"))
                await conn.execute(sa.text(f"ALTER ROLE {role} SET search_path = {schema}"))
            finally:
                await conn.execute(sa.text("SELECT pg_advisory_unlock(4242)"))
    finally:
        await engine.dispose()


def alembic_config(settings: ServiceSettings, script_location: Path) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.attributes["settings"] = settings
    return cfg


def upgrade(settings: ServiceSettings, script_location: Path, revision: str = "head") -> None:
    command.upgrade(alembic_config(settings, script_location), revision)


def run_env(context, target_metadata) -> None:
    """Body of every service's `migrations/env.py` (online mode, asyncpg, as the service role)."""
    settings: ServiceSettings = context.config.attributes["settings"]
    schema = settings.schema

    def do_run(connection):
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table_schema=schema,
            include_schemas=False,
            compare_type=True,
            include_object=lambda obj, name, type_, reflected, compare_to: not (
                type_ == "table" and name == "alembic_version"
            ),
        )
        with context.begin_transaction():
            context.run_migrations()

    async def main():
        engine = create_async_engine(
            settings.service_dsn(),
            connect_args={"server_settings": {"search_path": schema}},
        )
        async with engine.connect() as conn:
            await conn.run_sync(do_run)
            await conn.commit()
        await engine.dispose()

    asyncio.run(main())
