"""Provisioning end to end: billing/identity events in, subscriptions and backend accounts out.

The billing service is driven by its events here (published straight to the exchange, as
billing's outbox relay would), so these tests pin the provisioner's side of the contract:
exactly-once grants, retries and the admin retry of a failed job, refunds, block/unblock, the
lost-enqueue sweep, and the public `/subscriptions` API through the gateway.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import aio_pika
import httpx
import pytest

from contracts import Envelope, make_envelope
from contracts.billing import InvoicePaidV1, InvoiceRefundedV1, PlanSnapshot
from provisioner.moves import server_ref
from runtime import identity as signed
from runtime.settings import DEV_SIGNING_KEY
from tests.conftest import BROKER_PREFIX, register, sql, test_env, wait_for

ADMIN_ID = "e2e-provisioning-admin"


# ----------------------------------------------------------------------------- helpers


def publish(*envelopes: Envelope) -> None:
    """Publish like a producer's outbox relay: persistent, to the events exchange, confirmed."""

    async def main():
        conn = await aio_pika.connect(test_env()["RABBITMQ_URL"], timeout=10)
        try:
            channel = await conn.channel(publisher_confirms=True)
            exchange = await channel.declare_exchange(f"{BROKER_PREFIX}events",
                                                      aio_pika.ExchangeType.TOPIC, durable=True)
            for env in envelopes:
                await exchange.publish(
                    aio_pika.Message(body=env.model_dump_json().encode(),
                                     content_type="application/json",
                                     delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                     message_id=str(env.event_id)),
                    routing_key=env.routing_key, timeout=10)
        finally:
            await conn.close()

    asyncio.run(main())


def paid(user_id: str, days: int = 30, invoice_id: str | None = None) -> InvoicePaidV1:
    return InvoicePaidV1(
        invoice_id=invoice_id or f"inv_{uuid.uuid4().hex}", user_id=user_id,
        plan=PlanSnapshot(plan_id="plan-monthly", name="Monthly", duration_days=days,
                          max_devices=3, price_usd=Decimal("9.99")),
        amount_usd=Decimal("9.99"), asset="USDT", network="TRON", amount_asset=Decimal("9.99"),
        amount_paid_asset=Decimal("9.99"), paid_at=datetime.now(UTC))


def refund(event: InvoicePaidV1) -> InvoiceRefundedV1:
    return InvoiceRefundedV1(invoice_id=event.invoice_id, user_id=event.user_id, plan=event.plan,
                             reason="e2e refund", refunded_at=datetime.now(UTC))


def internal(stack, method: str, path: str, **kwargs) -> httpx.Response:
    """Call the provisioner's internal API as an ADMIN (what the gateway would sign)."""
    headers = {signed.HEADER: signed.sign(DEV_SIGNING_KEY, ADMIN_ID, "ADMIN",
                                      audience="provisioner")}
    return httpx.request(method, stack.api_url("provisioner") + path, headers=headers,
                         timeout=15, **kwargs)


def user_id(client: httpx.Client) -> str:
    return client.get("/auth/me").json()["user"]["id"]


def subscriptions(client: httpx.Client) -> list[dict]:
    r = client.get("/subscriptions")
    assert r.status_code == 200, r.text
    return r.json()["subscriptions"]


def admin_subscription(admin: httpx.Client, uid: str) -> dict | None:
    r = admin.get("/admin/subscriptions", params={"user_id": uid})
    assert r.status_code == 200, r.text
    subs = r.json()["subscriptions"]
    return subs[0] if subs else None


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def processed(event_id) -> bool:
    return bool(sql("SELECT 1 FROM provisioning.inbox WHERE event_id = $1", event_id))


def outbox_events(subscription_id: str) -> list[str]:
    rows = sql("SELECT routing_key FROM provisioning.outbox "
               "WHERE envelope->'payload'->>'subscription_id' = $1 ORDER BY id", subscription_id)
    return [r["routing_key"] for r in rows]


def worker_metric(stack, name: str, **labels) -> float:
    port = stack.worker_metrics_port("provisioner")
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    match = re.search(rf"^{name}\{{{re.escape(wanted)}\}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


# ----------------------------------------------------------------------------- flows


def test_paid_invoice_is_granted_exactly_once_and_a_second_invoice_extends(gateway_url):
    customer = register(gateway_url)
    uid = user_id(customer)
    first = paid(uid, days=30)
    envelope = make_envelope(first, producer="billing")
    publish(envelope, envelope)  # the same event delivered twice

    subs = wait_for(lambda: subscriptions(customer), message="subscription")
    sub = subs[0]
    assert sub["status"] == "ACTIVE" and sub["plan_id"] == "plan-monthly"
    assert sub["max_devices"] == 3
    expires = ts(sub["expires_at"])
    assert expires - ts(sub["started_at"]) == timedelta(days=30)
    account = sql("SELECT enabled FROM provisioning.sandbox_vpn_accounts a "
                  "JOIN provisioning.subscriptions s ON s.provision_ref = a.ref WHERE s.id = $1",
                  sub["id"])
    assert account == [{"enabled": True}]

    # the same invoice again under a new event id: recorded, but never applied twice
    again = make_envelope(first, producer="billing")
    publish(again)
    wait_for(lambda: processed(again.event_id), message="second event handled")
    grants = sql("SELECT status FROM provisioning.grants WHERE invoice_id = $1",
                 first.invoice_id)
    assert grants == [{"status": "APPLIED"}]

    second = paid(uid, days=10)
    publish(make_envelope(second, producer="billing"))
    extended = wait_for(lambda: [s for s in subscriptions(customer)
                                 if ts(s["expires_at"]) != expires], message="extension")
    assert ts(extended[0]["expires_at"]) == expires + timedelta(days=10)
    assert len(subscriptions(customer)) == 1
    assert outbox_events(sub["id"]) == ["provisioning.subscription.activated.v1",
                                        "provisioning.subscription.extended.v1"]

    access = customer.get(f"/subscriptions/{sub['id']}/access")
    assert access.status_code == 200, access.text
    body = access.json()
    assert body["backend"] == "sandbox" and body["access_url"].startswith("ss://")
    assert set(body) == {"backend", "access_url", "config", "fetched_at", "subscription_url",
                         "apps"}


def test_backend_failure_retries_then_fails_and_an_admin_retry_succeeds(gateway_url, stack):
    r = internal(stack, "POST", "/internal/sandbox/faults",
                 json={"operation": "ensure_active", "message": "sandbox backend is down"})
    assert r.status_code == 201, r.text
    try:
        retries_before = worker_metric(stack, "provisioner_provisions_total", outcome="retry")
        customer = register(gateway_url)
        uid = user_id(customer)
        event = paid(uid)
        publish(make_envelope(event, producer="billing"))

        failed = wait_for(lambda: sql(
            "SELECT envelope->'payload' AS p FROM provisioning.outbox "
            "WHERE routing_key = 'provisioning.provision.failed.v1' "
            "AND envelope->'payload'->>'invoice_id' = $1", event.invoice_id),
            message="provision.failed event")
        payload = json.loads(failed[0]["p"])
        assert payload["attempts"] == 3 and "sandbox backend is down" in payload["error"]
        grant = sql("SELECT status, attempts FROM provisioning.grants WHERE invoice_id = $1",
                    event.invoice_id)
        assert grant == [{"status": "FAILED", "attempts": 3}]
        assert subscriptions(customer) == []
        assert worker_metric(stack, "provisioner_provisions_total",
                             outcome="retry") >= retries_before + 2

        listed = internal(stack, "GET", "/internal/admin/provision-jobs/failed")
        assert listed.status_code == 200, listed.text
        job = next(j for j in listed.json()["jobs"]
                   if j["data"].get("invoice_id") == event.invoice_id)
        assert job["name"] == "apply_grant" and job["attempts_made"] == 3
        assert job["grant_status"] == "FAILED" and "sandbox backend is down" in job["failed_reason"]
    finally:
        assert internal(stack, "DELETE", "/internal/sandbox/faults").status_code == 204

    r = internal(stack, "POST", f"/internal/admin/provision-jobs/{job['id']}/retry")
    assert r.status_code == 202, r.text
    subs = wait_for(lambda: subscriptions(customer), message="subscription after admin retry")
    assert subs[0]["status"] == "ACTIVE"
    grant = sql("SELECT status FROM provisioning.grants WHERE invoice_id = $1", event.invoice_id)
    assert grant == [{"status": "APPLIED"}]
    again = internal(stack, "POST", f"/internal/admin/provision-jobs/{job['id']}/retry")
    assert again.status_code == 409  # no longer failed
    assert internal(stack, "POST", "/internal/admin/provision-jobs/no-such-job/retry"
                    ).status_code == 404


def test_refund_takes_time_back_and_block_suspends_until_unblock(gateway_url, admin_client):
    customer = register(gateway_url)
    uid = user_id(customer)
    first, second = paid(uid, days=30), paid(uid, days=10)
    publish(make_envelope(first, producer="billing"))
    sub = wait_for(lambda: admin_subscription(admin_client, uid), message="subscription")
    base = ts(sub["expires_at"])
    publish(make_envelope(second, producer="billing"))
    wait_for(lambda: ts(admin_subscription(admin_client, uid)["expires_at"])
             == base + timedelta(days=10), message="extension")

    publish(make_envelope(refund(second), producer="billing"))
    wait_for(lambda: ts(admin_subscription(admin_client, uid)["expires_at"]) == base,
             message="refunded time taken back")
    assert admin_subscription(admin_client, uid)["status"] == "ACTIVE"

    r = admin_client.post(f"/admin/users/{uid}/block")
    assert r.status_code == 200, r.text
    suspended = wait_for(lambda: (s := admin_subscription(admin_client, uid))["status"]
                         == "SUSPENDED" and s, message="suspended after block")
    assert suspended["suspend_reason"] == "USER_BLOCKED"
    enabled = sql("SELECT a.enabled FROM provisioning.sandbox_vpn_accounts a "
                  "JOIN provisioning.subscriptions s ON s.provision_ref = a.ref "
                  "WHERE s.user_id = $1", uid)
    assert enabled == [{"enabled": False}]
    r = admin_client.post(f"/admin/users/{uid}/unblock")
    assert r.status_code == 200, r.text
    wait_for(lambda: admin_subscription(admin_client, uid)["status"] == "ACTIVE",
             message="resumed after unblock")

    publish(make_envelope(refund(first), producer="billing"))
    canceled = wait_for(lambda: (s := admin_subscription(admin_client, uid))["status"]
                        == "CANCELED" and s, message="access revoked by the last refund")
    assert ts(canceled["expires_at"]) < base
    enabled = sql("SELECT a.enabled FROM provisioning.sandbox_vpn_accounts a "
                  "JOIN provisioning.subscriptions s ON s.provision_ref = a.ref "
                  "WHERE s.user_id = $1", uid)
    assert enabled == [{"enabled": False}]
    assert outbox_events(sub["id"])[-1] == "provisioning.subscription.expired.v1"


def test_a_grant_whose_job_was_lost_is_picked_up_by_the_sweep(gateway_url):
    customer = register(gateway_url)
    uid = user_id(customer)
    invoice = f"inv_{uuid.uuid4().hex}"
    # what a crash between the consumer's commit and its enqueue leaves behind
    sql("INSERT INTO provisioning.grants (invoice_id, kind, user_id, plan_id, plan, duration_days,"
        " max_devices, status, job_id, attempts, created_at, updated_at) VALUES ($1, 'INVOICE',"
        " $2, 'plan-monthly', $3::jsonb, 7, 1, 'PENDING', $4, 0, now() - interval '1 minute',"
        " now() - interval '1 minute')", invoice, uid,
        json.dumps({"plan_id": "plan-monthly", "name": "Monthly", "duration_days": 7,
                    "max_devices": 1, "price_usd": "9.99"}), f"provision-{invoice}")
    subs = wait_for(lambda: subscriptions(customer), message="swept grant applied")
    assert subs[0]["status"] == "ACTIVE"
    assert ts(subs[0]["expires_at"]) - ts(subs[0]["started_at"]) == timedelta(days=7)


def test_subscription_api_authorization_and_validation(gateway_url, admin_client):
    owner, stranger = register(gateway_url), register(gateway_url)
    publish(make_envelope(paid(user_id(owner)), producer="billing"))
    sub = wait_for(lambda: subscriptions(owner), message="subscription")[0]

    r = stranger.get(f"/subscriptions/{sub['id']}/access")
    assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"
    assert stranger.get("/subscriptions").json() == {"subscriptions": []}
    anonymous = httpx.get(f"{gateway_url}/api/v1/subscriptions", timeout=10)
    assert anonymous.status_code == 401

    for method, path, body in (("GET", "/admin/subscriptions", None),
                               ("POST", f"/admin/subscriptions/{sub['id']}/extend", {"days": 3}),
                               ("POST", f"/admin/subscriptions/{sub['id']}/suspend", None)):
        r = owner.request(method, path, json=body)
        assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN", (path, r.text)

    extend = f"/admin/subscriptions/{sub['id']}/extend"
    for bad in ({"days": "abc"}, {"days": 0}, {"days": 5, "extra": 1}, {}, {"days": 1.5}):
        r = admin_client.post(extend, json=bad)
        assert r.status_code == 400 and r.json()["code"] == "VALIDATION_ERROR", (bad, r.text)
    r = admin_client.post(extend, content=b"{not json", headers={"Content-Type":
                                                                  "application/json"})
    assert r.status_code == 400 and r.json()["code"] == "VALIDATION_ERROR"
    r = admin_client.get("/admin/subscriptions", params={"limit": 1000})
    assert r.status_code == 400 and r.json()["code"] == "VALIDATION_ERROR"
    r = admin_client.get("/admin/subscriptions", params={"cursor": "%%%"})
    assert r.status_code == 400 and r.json()["code"] == "VALIDATION_ERROR"
    assert admin_client.post("/admin/subscriptions/nope/extend",
                             json={"days": 1}).status_code == 404
    assert subscriptions(owner)[0]["expires_at"] == sub["expires_at"]  # nothing changed

    r = admin_client.post(extend, json={"days": 5})
    assert r.status_code == 200, r.text
    assert ts(r.json()["subscription"]["expires_at"]) == ts(sub["expires_at"]) + timedelta(days=5)
    r = admin_client.post(f"/admin/subscriptions/{sub['id']}/suspend")
    assert r.status_code == 200 and r.json()["subscription"]["status"] == "SUSPENDED"
    r = owner.get(f"/subscriptions/{sub['id']}/access")
    assert r.status_code == 409 and r.json()["code"] == "CONFLICT"
    r = admin_client.post(f"/admin/subscriptions/{sub['id']}/suspend")
    assert r.status_code == 409
    r = admin_client.post(f"/admin/subscriptions/{sub['id']}/resume")
    assert r.status_code == 200 and r.json()["subscription"]["status"] == "ACTIVE"
    assert owner.get(f"/subscriptions/{sub['id']}/access").status_code == 200

    log = admin_client.get("/admin/audit-log", params={"limit": 100}).json()["entries"]
    mine = [(e["action"], e["outcome"]) for e in log if e["target_id"] == sub["id"]]
    for expected in (("subscription.extend", "success"), ("subscription.suspend", "success"),
                     ("subscription.suspend", "refused:409"), ("subscription.resume", "success")):
        assert expected in mine, mine


def test_extend_past_ten_years_is_a_conflict_and_changes_nothing(gateway_url, admin_client):
    owner = register(gateway_url)
    publish(make_envelope(paid(user_id(owner), days=3000), producer="billing"))
    sub = wait_for(lambda: subscriptions(owner), message="subscription")[0]
    extend = f"/admin/subscriptions/{sub['id']}/extend"
    for days in (10**12, 2**63, -(10**12)):  # out of range: a 400, never an overflow
        r = admin_client.post(extend, json={"days": days})
        assert r.status_code == 400 and r.json()["code"] == "VALIDATION_ERROR", (days, r.text)
    r = admin_client.post(extend, json={"days": 3650})
    assert r.status_code == 409 and r.json()["code"] == "CONFLICT", r.text
    room = r.json()["details"]["max_days"]
    assert 640 <= room <= 660
    assert subscriptions(owner)[0]["expires_at"] == sub["expires_at"]
    assert sql("SELECT count(*) AS n FROM provisioning.grants WHERE subscription_id = $1"
               " AND kind = 'ADMIN'", sub["id"]) == [{"n": 0}]
    r = admin_client.post(extend, json={"days": room})
    assert r.status_code == 200, r.text
    assert admin_client.post(extend, json={"days": 1}).status_code == 409


@pytest.mark.parametrize("path", ["/subscriptions/x/access", "/admin/subscriptions"])
def test_internal_api_refuses_calls_without_a_signed_identity(stack, path):
    r = httpx.get(stack.api_url("provisioner") + "/internal" + path, timeout=10)
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHENTICATED"


def test_a_location_change_moves_the_access_to_the_new_server_and_revokes_the_old(
        gateway_url, admin_client):
    """Two servers in two locations: bought on the seeded one (location `default`), moved to
    another: the access is the new server's, the old account is revoked, the move is done
    once; another user's subscription and an unknown location are 404."""
    r = admin_client.post("/admin/servers", json={
        "name": f"e2e-move-{uuid.uuid4().hex[:6]}", "location": "e2e-move-b",
        "backend": "sandbox", "capacity": 5, "settings": {"host": "b.vpn.e2e.test"}})
    assert r.status_code == 201, r.text
    server_b = r.json()["server"]["id"]
    owner, stranger = register(gateway_url), register(gateway_url)
    publish(make_envelope(paid(user_id(owner)), producer="billing"))
    sub = wait_for(lambda: subscriptions(owner), message="subscription")[0]
    before = owner.get(f"/subscriptions/{sub['id']}/access").json()
    assert "b.vpn.e2e.test" not in before["access_url"]
    link = before["subscription_url"]  # the stable link: served from A now, from B after

    def served() -> str:
        r = httpx.get(link, timeout=10)
        assert r.status_code == 200, r.text
        return base64.b64decode(r.content).decode()

    assert served().startswith("ss://") and "b.vpn.e2e.test" not in served()
    old_ref = sql("SELECT provision_ref FROM provisioning.subscriptions WHERE id = $1",
                  sub["id"])[0]["provision_ref"]

    path = f"/subscriptions/{sub['id']}/location"
    assert stranger.put(path, json={"location_id": "e2e-move-b"}).status_code == 404
    assert owner.put(path, json={"location_id": "nowhere-1"}).status_code == 404
    r = owner.put(path, json={"location_id": "e2e-move-b"})
    assert r.status_code == 202, r.text
    move = r.json()["move"]
    assert (move["from_location"], move["to_location"]) == ("default", "e2e-move-b")

    def moved():
        rows = sql("SELECT status FROM provisioning.moves WHERE id = $1", move["id"])
        return rows and rows[0]["status"] == "DONE"

    wait_for(moved, message="the move done")
    after = owner.get(f"/subscriptions/{sub['id']}/access")
    assert after.status_code == 200 and "b.vpn.e2e.test" in after.json()["access_url"]
    assert after.json()["subscription_url"] == link and "b.vpn.e2e.test" in served()
    accounts = sql("SELECT a.server, a.enabled, a.ref = s.provision_ref AS current "
                   "FROM provisioning.sandbox_vpn_accounts a, provisioning.subscriptions s "
                   "WHERE s.id = $1 AND a.ref IN ($2, s.provision_ref) ORDER BY current",
                   sub["id"], old_ref)
    assert accounts == [{"server": "", "enabled": False, "current": False},
                        {"server": server_b, "enabled": True, "current": True}]
    r = owner.put(path, json={"location_id": "e2e-move-b"})
    assert (r.status_code, r.json()["move"]) == (200, None)  # there already
    assert sql("SELECT count(*) AS n FROM provisioning.moves WHERE subscription_id = $1",
               sub["id"]) == [{"n": 1}]


def test_draining_a_server_of_30_customers_under_load_moves_each_once(gateway_url,
                                                                       admin_client):
    """30 customers on server C of a location; D added beside it; C drained while five more
    customers move into the location: every access ends on D, once, and C is DISABLED with
    none left on it."""
    location = f"e2e-drain-{uuid.uuid4().hex[:4]}"

    def server(name: str, capacity: int) -> str:
        r = admin_client.post("/admin/servers", json={
            "name": f"{name}-{uuid.uuid4().hex[:6]}", "location": location, "backend": "sandbox",
            "capacity": capacity, "settings": {"host": f"{name}.vpn.e2e.test"}})
        assert r.status_code == 201, r.text
        return r.json()["server"]["id"]

    def customers(n: int) -> list[tuple[httpx.Client, str]]:
        made = [register(gateway_url) for _ in range(n)]
        publish(*(make_envelope(paid(user_id(c)), producer="billing") for c in made))
        return [(c, wait_for(lambda c=c: subscriptions(c), message="subscription")[0]["id"])
                for c in made]

    def move_in(batch: list[tuple[httpx.Client, str]]) -> None:
        for c, sub in batch:
            r = c.put(f"/subscriptions/{sub}/location", json={"location_id": location})
            assert r.status_code == 202, r.text

    def open_moves(subs: list[str]) -> int:
        return sql("SELECT count(*) AS n FROM provisioning.moves WHERE subscription_id ="
                   " ANY($1) AND status NOT IN ('DONE', 'CANCELED')", subs)[0]["n"]

    c_id = server("drain-c", 40)
    first = customers(30)
    move_in(first)
    subs = [s for _, s in first]
    wait_for(lambda: open_moves(subs) == 0, timeout=90, message="30 customers on C")
    d_id = server("drain-d", 40)
    later = customers(5)
    r = admin_client.post(f"/admin/servers/{c_id}/drain")
    assert r.status_code == 202, r.text
    move_in(later)  # new customers arrive while C drains: they go to D
    subs += [s for _, s in later]

    def status(sid: str) -> str:
        return next(s for s in admin_client.get("/admin/servers").json()["servers"]
                    if s["id"] == sid)["status"]

    wait_for(lambda: status(c_id) == "DISABLED" and open_moves(subs) == 0, timeout=120,
             message="C drained and disabled")
    placed = sql("SELECT id, server_id, provision_ref FROM provisioning.subscriptions"
                 " WHERE id = ANY($1)", subs)
    assert len(placed) == 35
    assert all(p["server_id"] == d_id and p["provision_ref"] == server_ref(p["id"], d_id)
               for p in placed)
    accounts = {(a["ref"]): (a["server"], a["enabled"]) for a in sql(
        "SELECT ref, server, enabled FROM provisioning.sandbox_vpn_accounts WHERE ref = ANY($1)",
        [server_ref(sub, sid) for sub in subs for sid in (c_id, d_id)])}
    for sub in subs:
        assert accounts[server_ref(sub, d_id)] == (d_id, True)  # one working account, on D
    for sub in subs[:30]:
        assert accounts[server_ref(sub, c_id)] == (c_id, False)  # and none left on C
    assert not any(server_ref(sub, c_id) in accounts for sub in subs[30:])  # none placed on C
    moves = sql("SELECT subscription_id, reason, count(*) AS n FROM provisioning.moves"
                " WHERE subscription_id = ANY($1) AND status = 'DONE'"
                " GROUP BY subscription_id, reason", subs[:30])
    assert sorted((m["reason"], m["n"]) for m in moves) == sorted(
        [("LOCATION", 1)] * 30 + [("DRAIN", 1)] * 30)  # each moved in once, drained once
    for c, sub in first + later:
        access = c.get(f"/subscriptions/{sub}/access").json()
        assert "drain-d.vpn.e2e.test" in access["access_url"]
