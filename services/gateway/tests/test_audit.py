"""An admin mutation made through the API and through the admin panel is one action
(`gateway.actions`): the same audit entry either way, written in the same transaction as a change
the gateway makes itself, and recorded with the service's outcome for a change another service
makes (success or refusal). The real gateway app, signed in with real sessions and CSRF tokens,
on a migrated database, with its clients calling real HTTP servers for the services."""

from __future__ import annotations

import httpx
import pytest
from gateway_tests_factories import PASSWORD, add_user

from gateway.app import create_api
from gateway.security import csrf_token


@pytest.fixture
async def admin_client(db, redis, gateway_settings):
    """An httpx client signed in as a fresh ADMIN; `.csrf` is its session's form token."""
    settings = gateway_settings
    app = create_api(settings)
    admin = await add_user(db, "ADMIN")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    client = httpx.AsyncClient(transport=transport, base_url="http://gw")
    r = await client.post("/api/v1/auth/login", json={"email": f"{admin}@example.com",
                                                      "password": PASSWORD})
    assert r.status_code == 200, r.text
    client.admin_id = admin
    client.csrf = csrf_token(settings.internal_signing_key,
                             client.cookies[settings.session_cookie])
    yield client
    await client.aclose()
    await app.state.clients.close()
    await app.state.db.dispose()


async def entries(pg, target_id: str) -> list[dict]:
    rows = await pg.fetch("SELECT actor_id, action, target_type, outcome, details::text AS d "
                          "FROM identity.audit_log WHERE target_id = $1 ORDER BY id", target_id)
    return [dict(r) for r in rows]


async def test_blocking_through_the_api_and_the_panel_writes_the_same_entry(admin_client, db,
                                                                            pg):
    by_api, by_panel = await add_user(db), await add_user(db)
    r = await admin_client.post(f"/api/v1/admin/users/{by_api}/block", json={})
    assert r.status_code == 200 and r.json()["user"]["is_blocked"] is True
    r = await admin_client.post(f"/admin/users/{by_panel}/block",
                                data={"csrf_token": admin_client.csrf})
    assert r.status_code == 303, r.text
    api_entries, panel_entries = await entries(pg, by_api), await entries(pg, by_panel)
    assert api_entries == panel_entries == [
        {"actor_id": admin_client.admin_id, "action": "user.block", "target_type": "user",
         "outcome": "success", "d": "null"}]


async def test_a_block_whose_audit_entry_cannot_be_written_is_not_applied(admin_client, db, pg):
    """The entry is written in the block's transaction: when it fails, the block is undone, on
    both paths."""
    by_api, by_panel = await add_user(db), await add_user(db)
    await pg.execute("""
        CREATE OR REPLACE FUNCTION identity.refuse_audit() RETURNS trigger AS $$
        BEGIN RAISE EXCEPTION 'audit store refused'; END $$ LANGUAGE plpgsql;
        CREATE TRIGGER refuse_audit BEFORE INSERT ON identity.audit_log
        FOR EACH ROW EXECUTE FUNCTION identity.refuse_audit();""")
    try:
        r = await admin_client.post(f"/api/v1/admin/users/{by_api}/block", json={})
        assert r.status_code == 500
        r = await admin_client.post(f"/admin/users/{by_panel}/block",
                                    data={"csrf_token": admin_client.csrf})
        assert r.status_code == 500
    finally:
        await pg.execute("DROP TRIGGER refuse_audit ON identity.audit_log")
    blocked = await pg.fetch("SELECT id FROM identity.users WHERE id = ANY($1) AND is_blocked",
                             [by_api, by_panel])
    assert blocked == []
    assert await entries(pg, by_api) == await entries(pg, by_panel) == []


async def test_a_services_answer_is_audited_alike_from_both_paths(admin_client, services, pg):
    body = {"name": "Year", "price_usd": "49.99", "duration_days": 365, "max_devices": 5}
    r = await admin_client.post("/api/v1/admin/plans", json=body)
    assert r.status_code == 201, r.text
    r = await admin_client.post("/admin/plans", data={**{k: str(v) for k, v in body.items()},
                                                      "csrf_token": admin_client.csrf})
    assert r.status_code == 303, r.text
    created = await entries(pg, "new")
    assert [(e["action"], e["outcome"], e["d"]) for e in created[-2:]] == [
        ("plan.create", "success", '{"plan_id": "p1"}')] * 2
    # refused by billing: recorded with billing's status, from either path
    services.set("billing", "POST", r"/internal/admin/invoices/[^/]+/refund", 409,
                 {"code": "ILLEGAL_TRANSITION", "message": "Not paid"})
    r = await admin_client.post("/api/v1/admin/invoices/i1/refund", json={"reason": "asked"})
    assert r.status_code == 409 and r.json()["code"] == "ILLEGAL_TRANSITION"
    r = await admin_client.post("/admin/invoices/i1/refund",
                                data={"reason": "asked", "csrf_token": admin_client.csrf})
    assert r.status_code == 400 and "Not paid" in r.text  # the invoice page, with the reason
    refunds = await entries(pg, "i1")
    assert [(e["action"], e["outcome"], e["d"]) for e in refunds] == [
        ("invoice.refund", "refused:409", '{"to": "original", "reason": "asked"}')] * 2
    assert services.writes("billing").count("POST /internal/admin/invoices/i1/refund") == 2


async def test_a_balance_of_nobody_is_never_adjusted(admin_client, services):
    r = await admin_client.post("/api/v1/admin/users/no-such-user/balance/adjustments",
                                json={"amount_usd": "5.00", "note": "x"},
                                headers={"Idempotency-Key": "k1"})
    assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"
    assert not [w for w in services.writes("billing") if "/balance/adjustments" in w]
