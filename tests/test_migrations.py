"""Every service's migrations: one head, a fresh database migrated to it matches the models
(`alembic check`), and the whole chain downgrades to nothing and upgrades again."""

from __future__ import annotations

import asyncio
import importlib
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from alembic import command
from alembic.script import ScriptDirectory

from runtime.migrations import alembic_config, bootstrap
from tests.test_sandbox_migrations import ROOT, SERVER, _fetch, drift

SERVICES = ["billing", "gateway", "provisioner", "telegram", "tickets"]


@pytest.mark.parametrize("service", SERVICES)
def test_migrations_have_one_head_and_match_the_models(service):
    # On a thread of its own, as in test_sandbox_migrations: Alembic runs its own event loops.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(_check, service).result()


def _check(service: str) -> None:
    name = f"migrations_{service}{os.environ.get('TEST_SLOT', '0')}"
    settings = importlib.import_module(f"{service}.config").Settings(
        DATABASE_URL=f"{SERVER}/{name}")
    cfg = alembic_config(settings, ROOT / "services" / service / "src" / service / "migrations")
    heads = ScriptDirectory.from_config(cfg).get_heads()
    assert len(heads) == 1, f"{service} has {len(heads)} migration heads: {heads}"

    def tables() -> list:
        return asyncio.run(_fetch(name, "SELECT table_name FROM information_schema.tables"
                                        f" WHERE table_schema = '{settings.schema}'"
                                        " AND table_name <> 'alembic_version'"))

    asyncio.run(_fetch("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(_fetch("postgres", f'CREATE DATABASE "{name}"'))
    try:
        asyncio.run(bootstrap(settings))
        command.upgrade(cfg, "head")
        assert drift(cfg) == []
        assert tables()
        command.downgrade(cfg, "base")
        assert tables() == []
        command.upgrade(cfg, "head")
        assert drift(cfg) == []
    finally:
        asyncio.run(_fetch("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
