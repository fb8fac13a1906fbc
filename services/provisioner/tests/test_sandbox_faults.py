"""The sandbox backend's injected failures live outside the provisioning schema: added through the
API, they reach the worker's backend (another process, the same Redis key under the jobs
prefix), each spends one of its `count` calls, and the production migrations create no table
for them (upgrade and downgrade of a database that had one: tests/test_sandbox_migrations.py)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from provisioner.app import create_api
from provisioner.backends import BackendError, build_backend
from runtime import identity

REDIS_URL = f"redis://127.0.0.1:6379/{1 + int(os.environ.get('TEST_SLOT', '0'))}"


@pytest.fixture
async def processes(unit_settings, db) -> AsyncIterator[tuple[httpx.AsyncClient, object]]:
    """The provisioner API (over ASGI) and a worker's backend, on a jobs prefix of their own."""
    settings = unit_settings.model_copy(update={"redis_url": REDIS_URL,
                                                "jobs_prefix": f"test-{uuid.uuid4().hex[:8]}"})
    api = create_api(settings)
    worker = build_backend(settings, db)
    header = identity.sign(settings.internal_signing_key, "admin-1", "ADMIN",
                           audience="provisioner")
    async with api.router.lifespan_context(api), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=api), base_url="http://prov",
            headers={identity.HEADER: header}) as client:
        yield client, worker
        await client.delete("/internal/sandbox/faults")
    await worker.close()


async def activate(backend) -> None:
    await backend.ensure_active("vpn-sbx-faults", expires_at=datetime.now(UTC) + timedelta(days=1),
                                max_devices=1)


async def test_a_fault_added_through_the_api_fails_the_workers_next_calls(processes):
    api, worker = processes
    r = await api.post("/internal/sandbox/faults", json={
        "operation": "ensure_active", "count": 2, "message": "sandbox backend is down"})
    assert r.status_code == 201, r.text
    await worker.accounts()  # another operation is not hit
    for _ in range(2):
        with pytest.raises(BackendError, match="sandbox backend is down"):
            await activate(worker)
    await activate(worker)  # both calls spent
    assert (await worker.accounts())["vpn-sbx-faults"] is True


async def test_a_fault_until_removed_lasts_until_the_api_removes_it(processes):
    api, worker = processes
    assert (await api.post("/internal/sandbox/faults", json={})).status_code == 201
    for _ in range(3):
        with pytest.raises(BackendError, match="injected sandbox failure"):
            await worker.accounts()
    assert (await api.delete("/internal/sandbox/faults")).status_code == 204
    await worker.accounts()


async def test_the_production_schema_has_no_fault_table(db):
    async with db.transaction() as s:
        found = await s.scalar(sa.text("SELECT to_regclass('provisioning.sandbox_vpn_faults')"))
    assert found is None
