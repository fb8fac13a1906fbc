"""The provisioner's ops endpoints on a real database and a real Redis: a provision job that ran out
of attempts, retried through `POST /internal/admin/jobs/provision/{id}/retry`, reopens its FAILED
grant (the provisioner's own retry, not a bare BullMQ one) and then provisions the subscription."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
import sqlalchemy as sa

from contracts.billing import InvoicePaidV1, PlanSnapshot
from provisioner.app import create_api
from provisioner.jobs import PROVISION, provision_handlers
from provisioner.models import Grant, Subscription
from provisioner.service import grant_job_id
from runtime import identity
from runtime.jobs import JobWorker
from runtime.testing import await_for

REDIS_URL = f"redis://127.0.0.1:6379/{1 + int(os.environ.get('TEST_SLOT', '0'))}"


def paid(user_id: str) -> InvoicePaidV1:
    plan = PlanSnapshot(plan_id="plan-m", name="Monthly", duration_days=30, max_devices=3,
                        price_usd=Decimal("9.99"))
    return InvoicePaidV1(invoice_id=uuid.uuid4().hex, user_id=user_id, plan=plan,
                         amount_usd=plan.price_usd, asset="USDT", network="TRON",
                         amount_asset=plan.price_usd, amount_paid_asset=plan.price_usd,
                         paid_at=datetime.now(UTC))


@pytest.fixture
async def app(unit_settings, db):
    """The provisioner's API (sandbox backend) on queue prefixes of its own, two attempts a job."""
    tag = f"test-{uuid.uuid4().hex[:8]}"
    settings = unit_settings.model_copy(update={
        "redis_url": REDIS_URL, "jobs_prefix": tag, "broker_prefix": f"{tag}.",
        "provision_attempts": 2, "provision_backoff_ms": 10})
    api = create_api(settings)
    async with api.router.lifespan_context(api):
        yield api
        await api.state.jobs.queue.queue.obliterate(force=True)


def admin(api, role: str = "ADMIN") -> httpx.AsyncClient:
    settings = api.state.settings
    header = identity.sign(settings.internal_signing_key, "admin-1", role,
                           audience="provisioner")
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://prov",
                             headers={identity.HEADER: header})


async def grant(api, invoice_id: str) -> Grant:
    async with api.state.db.transaction() as s:
        return await s.scalar(sa.select(Grant).where(Grant.invoice_id == invoice_id))


async def run_jobs_until(api, predicate, what: str):
    """The provision worker, running until `predicate` holds."""
    worker = JobWorker(PROVISION, REDIS_URL,
                       provision_handlers(api.state.db, api.state.service),
                       prefix=api.state.settings.jobs_prefix)
    worker.start()
    try:
        return await await_for(predicate, timeout=30, message=what)
    finally:
        await worker.close()


async def test_retrying_a_failed_provision_job_reopens_its_grant_and_provisions(app):
    service, jobs = app.state.service, app.state.jobs
    event = paid("u-ops")
    job_id = grant_job_id(event.invoice_id)
    async with app.state.db.transaction() as s:
        await service.record_paid(s, event, event.paid_at)
    await service.backend.add_fault("ensure_active", 100, "sandbox backend is down")
    await jobs.grant(event.invoice_id)

    async def grant_failed():
        return (await grant(app, event.invoice_id)).status == "FAILED" and \
            await jobs.queue.queue.getJobState(job_id) == "failed"

    await run_jobs_until(app, grant_failed, "the grant to fail")
    await service.backend.clear_faults()

    async with admin(app) as client:
        view = (await client.get("/internal/admin/ops")).json()
        assert {j["queue"] for j in view["jobs"]} == {"provision", "provisioner_schedules"}
        [failed] = [j for j in view["failed_jobs"] if j["id"] == job_id]
        assert failed["queue"] == "provision" and failed["attempts"] == 2
        assert "sandbox backend is down" in failed["reason"]

        async with admin(app, "SUPPORT") as support:
            refused = await support.post(f"/internal/admin/jobs/provision/{job_id}/retry")
            assert refused.status_code == 403
        r = await client.post(f"/internal/admin/jobs/provision/{job_id}/retry")
        assert r.status_code == 200, r.text
        assert r.json() == {"queue": "provision", "id": job_id, "retried": True}

        reopened = await grant(app, event.invoice_id)
        assert reopened.status == "PENDING" and reopened.attempts == 0
        assert await jobs.queue.queue.getJobState(job_id) == "waiting"

        async def applied():
            return (await grant(app, event.invoice_id)).status == "APPLIED"

        await run_jobs_until(app, applied, "the retried grant to be applied")
        async with app.state.db.transaction() as s:
            sub = await s.scalar(sa.select(Subscription).where(Subscription.user_id == "u-ops"))
        assert sub.status == "ACTIVE"

        again = await client.post(f"/internal/admin/jobs/provision/{job_id}/retry")
        assert again.status_code == 409  # completed, no longer failed


async def test_a_customer_reads_their_own_invoices_grant_only(app):
    event = paid("grant-owner")
    async with app.state.db.transaction() as s:
        await app.state.service.record_and_apply(s, event, datetime.now(UTC))
    own = admin(app, "USER")  # signed as admin-1: not the owner
    owner_header = identity.sign(app.state.settings.internal_signing_key, "grant-owner", "USER",
                                 audience="provisioner")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://prov",
                                 headers={identity.HEADER: owner_header}) as owner, own:
        r = await owner.get(f"/internal/grants/{event.invoice_id}")
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["status"], body["invoice_id"]) == ("APPLIED", event.invoice_id)
        assert body["new_expires_at"] is not None and body["subscription_id"]
        assert (await own.get(f"/internal/grants/{event.invoice_id}")).status_code == 404
        assert (await owner.get("/internal/grants/no-such-invoice")).status_code == 404
