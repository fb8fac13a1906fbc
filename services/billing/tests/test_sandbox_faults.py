"""The sandbox provider's injected outages live outside the billing schema: added through the
API, they reach the worker's provider (another process, the same Redis key under the jobs
prefix), and the production migrations create no table for them (upgrade and downgrade of a
database that had one: tests/test_sandbox_migrations.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest

from billing.app import create_api
from billing.providers.sandbox import sandbox_chain
from billing.schemas import InvoiceCreate, PlanCreate
from billing.service import plan_service
from billing.wiring import build_components
from runtime import identity

from .conftest import make_settings


def as_admin() -> dict[str, str]:
    """A fresh signed ADMIN identity (a signature is good for a short while only)."""
    return {identity.HEADER: identity.sign("dev-internal-signing-key-change-me", "admin-1",
                                           "ADMIN", audience="billing")}


@pytest.fixture
async def processes(migrated, db) -> AsyncIterator[tuple[httpx.AsyncClient, object]]:
    """The billing API (over ASGI) and a worker's components, on a jobs prefix of their own."""
    settings = make_settings(JOBS_PREFIX=f"test-{uuid.uuid4().hex[:8]}")
    app = create_api(settings)
    worker = build_components(settings, db)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b",
                                 headers=as_admin()) as api:
        yield api, worker
        await api.delete("/internal/sandbox/faults")
    await worker.close()
    await app.state.billing.providers.close()
    await app.state.db.dispose()


async def paid_invoice(db, worker) -> str:
    async with db.transaction() as s:
        plan = await plan_service.create(s, PlanCreate(
            name=f"plan-{uuid.uuid4().hex[:10]}", price_usd="5.00", duration_days=30,
            max_devices=1))
    result = await worker.billing.create_invoice_idempotent(
        db, user_id="u-faults", key=uuid.uuid4().hex,
        body=InvoiceCreate(plan_id=plan.id, asset="USDT", network="TRON"))
    invoice = result.json()["invoice"]
    async with db.transaction() as s:
        await sandbox_chain.transfer(s, address=invoice["address"], asset="USDT", network="TRON",
                                     amount_asset=Decimal(invoice["amount_asset"]))
        await sandbox_chain.mine(s, 2)
    return invoice["id"]


async def test_a_fault_added_through_the_api_reaches_the_worker(processes, db):
    api, worker = processes
    invoice_id = await paid_invoice(db, worker)
    r = await api.post("/internal/sandbox/faults", json={"operation": "observe",
                                                         "message": "provider timed out"})
    assert r.status_code == 201 and isinstance(r.json()["id"], int)
    assert await worker.watcher.watch_one(invoice_id) == "provider_error"
    assert (await api.delete("/internal/sandbox/faults")).status_code == 204
    assert await worker.watcher.watch_one(invoice_id) == "PAID"


async def test_another_jobs_prefix_does_not_see_the_fault(processes, db):
    api, worker = processes
    invoice_id = await paid_invoice(db, worker)
    assert (await api.post("/internal/sandbox/faults", json={})).status_code == 201
    other = build_components(make_settings(JOBS_PREFIX=f"test-{uuid.uuid4().hex[:8]}"), db)
    try:
        assert await other.watcher.watch_one(invoice_id) == "PAID"
    finally:
        await other.close()


async def test_the_production_schema_has_no_fault_table(pg):
    assert await pg.fetchval("SELECT to_regclass('billing.sandbox_payment_faults')") is None
