"""retention_cleanup: each service purges only its own old data, and a second run purges nothing."""

from __future__ import annotations

import subprocess
import sys
import uuid

from tests.conftest import ROOT, register


def cleanup(stack, service: str) -> None:
    r = subprocess.run([sys.executable, "-m", service, "retention-cleanup"], env=stack.full_env(),
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


async def test_retention_purges_old_rows_and_keeps_fresh_ones(stack, gateway_url, db):
    customer = register(gateway_url)
    me = customer.get("/auth/me").json()["user"]
    fresh_ticket = customer.post("/tickets", json={"subject": "fresh", "body": "x"}).json()
    old_ticket = customer.post("/tickets", json={"subject": "old closed", "body": "x"}).json()
    customer.post(f"/tickets/{old_ticket['ticket']['id']}/close")
    old_session = uuid.uuid4().hex
    await db.execute("INSERT INTO identity.sessions (token_hash, user_id, created_at, expires_at) "
                     "VALUES ($1, $2, now() - interval '40 days', now() - interval '10 days')",
                     old_session, me["id"])
    await db.execute("UPDATE tickets.tickets SET closed_at = now() - interval '400 days' "
                     "WHERE id = $1", old_ticket["ticket"]["id"])
    await db.execute("INSERT INTO telegram.received_updates (update_id, payload, received_at, "
                     "processed_at, outcome) VALUES (-42, '{}', now() - interval '30 days', "
                     "now() - interval '30 days', 'old')")
    await db.execute("UPDATE tickets.outbox SET published_at = now() - interval '30 days' "
                     "WHERE envelope->'payload'->>'ticket_id' = $1", old_ticket["ticket"]["id"])

    for service in ("gateway", "tickets", "telegram"):
        cleanup(stack, service)

    assert await db.fetchval("SELECT count(*) FROM identity.sessions WHERE token_hash = $1",
                             old_session) == 0
    assert await db.fetchval("SELECT count(*) FROM identity.sessions WHERE user_id = $1",
                             me["id"]) == 1  # the live session stays
    assert customer.get("/auth/me").status_code == 200
    assert await db.fetchval("SELECT count(*) FROM tickets.tickets WHERE id = $1",
                             old_ticket["ticket"]["id"]) == 0
    assert await db.fetchval("SELECT count(*) FROM tickets.tickets WHERE id = $1",
                             fresh_ticket["ticket"]["id"]) == 1
    assert await db.fetchval("SELECT count(*) FROM telegram.received_updates "
                             "WHERE update_id = -42") == 0
    assert await db.fetchval("SELECT count(*) FROM tickets.outbox WHERE "
                             "envelope->'payload'->>'ticket_id' = $1",
                             old_ticket["ticket"]["id"]) == 0

    before = await db.fetchval("SELECT count(*) FROM tickets.tickets")
    cleanup(stack, "tickets")  # idempotent: nothing more to remove
    assert await db.fetchval("SELECT count(*) FROM tickets.tickets") == before


async def test_every_worker_registers_one_retention_schedule(stack):
    import redis.asyncio as redis

    r = redis.Redis.from_url(stack.env["REDIS_URL"])
    try:
        prefix = stack.env["JOBS_PREFIX"]
        for service in ("gateway", "tickets", "telegram"):
            keys = await r.keys(f"{prefix}:retention_cleanup.{service}:repeat*")
            assert keys, f"no retention schedule for {service}"
    finally:
        await r.aclose()
