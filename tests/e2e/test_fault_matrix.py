"""Fault matrix: a mixed workload (purchases + support conversations) while one fault at a time
hits the system. After each: every paid invoice provisioned exactly once, every ticket message in
the support chat exactly once, every operator reply on its ticket exactly once, nothing stuck and
no new dead letters. A summary line per fault prints what was injected and the counts.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid

import asyncpg
import httpx
import pytest

from runtime import identity
from runtime.faults import FaultSwitch
from tests.conftest import ADMIN_DSN, queue_depth
from tests.e2e.purchases import buy_many, call, catalogue, new_customer, pay_invoice
from tests.e2e.test_purchase_faults import _rabbitmq, _restart_redis

pytestmark = pytest.mark.serial  # its faults restart the shared Postgres, RabbitMQ and Redis

SUPPORT_CHAT = -1001000000001
DLQS = ["tickets.telegram-events.dlq", "telegram.ticket-events.dlq",
        "provisioner.billing-events.dlq"]


async def purchase(gw: str) -> str:
    c = await new_customer(gw)
    try:
        plan, option = await catalogue(c)
        return (await pay_invoice(c, plan, option))["id"]
    finally:
        await c.aclose()


async def conversation(gw: str, run: str, i: int) -> tuple[str, list[str]]:
    c = await new_customer(gw)
    try:
        body = f"[{run}-t{i}]"
        r = await call(c, "POST", "/tickets", json={"subject": f"fault {run} {i}", "body": body})
        assert r.status_code == 201, r.text
        tid = r.json()["ticket"]["id"]
        follow = f"[{run}-f{i}]"
        r = await call(c, "POST", f"/tickets/{tid}/messages", json={"body": follow})
        assert r.status_code == 201, r.text
        return tid, [body, follow]
    finally:
        await c.aclose()


async def workload(gw: str, run: str, purchases: int = 6, tickets: int = 3):
    results = await asyncio.gather(*(purchase(gw) for _ in range(purchases)),
                                   *(conversation(gw, run, i) for i in range(tickets)))
    return results[:purchases], results[purchases:]


def _admin_header(stack, service: str) -> dict[str, str]:
    key = stack.env.get("INTERNAL_SIGNING_KEY", "dev-internal-signing-key-change-me")
    return {identity.HEADER: identity.sign(key, "fault-matrix", "ADMIN", audience=service),
            "Content-Type": "application/json"}


def inject(stack, fault: str):
    """Start a fault; returns a function that heals it."""
    emu = stack.env["TELEGRAM_API_BASE"]
    if fault.startswith("kill:"):
        service = fault.split(":", 1)[1]
        stack.kill(f"{service}-worker")
        return lambda: stack.start_service(service, "worker")
    if fault == "rabbitmq-restart":
        _rabbitmq("stop_app")
        return lambda: _rabbitmq("start_app")
    if fault == "redis-restart":
        _restart_redis()
        return lambda: None
    if fault == "postgres-restart":
        version = subprocess.run(["ls", "/etc/postgresql"], capture_output=True, text=True,
                                 check=True).stdout.split()[0]
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
                       check=True, timeout=120, capture_output=True)
        return lambda: None
    if fault == "telegram-429-then-5xx":
        httpx.post(f"{emu}/_emulator/faults", json={"status": 429, "for_seconds": 3,
                                                    "retry_after": 1}, timeout=10)
        def heal():
            httpx.post(f"{emu}/_emulator/faults", json={"status": 502, "for_seconds": 3},
                       timeout=10)
        return heal
    if fault == "vpn-backend-down":
        prov = stack.api_url("provisioner")
        r = httpx.post(f"{prov}/internal/sandbox/faults",
                       headers=_admin_header(stack, "provisioner"),
                       json={"operation": "*", "message": "backend timed out"}, timeout=10)
        assert r.status_code == 201, r.text
        return lambda: httpx.delete(f"{prov}/internal/sandbox/faults",
                                    headers=_admin_header(stack, "provisioner"), timeout=10)
    if fault == "payment-provider-timeout":
        # payment checks hang 1 s and time out (payments made now go unseen), then every
        # provider call does for 2 s more (new invoices are refused) and the outage ends by itself
        faults = f"{stack.api_url('billing')}/internal/sandbox/faults"
        r = httpx.post(faults, headers=_admin_header(stack, "billing"), timeout=10, json={
            "operation": "observe", "delay_ms": 1000, "message": "provider timed out"})
        assert r.status_code == 201, r.text

        def heal():
            httpx.delete(faults, headers=_admin_header(stack, "billing"), timeout=10)
            httpx.post(faults, headers=_admin_header(stack, "billing"), timeout=10, json={
                "operation": "*", "delay_ms": 1000, "for_seconds": 2,
                "message": "provider timed out"})
        return heal
    raise ValueError(fault)


def _provider_errors(stack, operation: str) -> float:
    """Failed payment-provider calls of `operation` counted by billing's API and worker."""
    urls = [stack.api_url("billing") + "/metrics",
            f"http://127.0.0.1:{stack.worker_metrics_port('billing')}/metrics"]
    wanted = f'billing_provider_errors_total{{operation="{operation}",provider="sandbox"}}'
    return sum(float(line.rsplit(" ", 1)[1]) for url in urls
               for line in httpx.get(url, timeout=10).text.splitlines()
               if line.startswith(wanted))


FAULTS = ["kill:gateway", "kill:billing", "kill:provisioner", "kill:tickets", "kill:telegram",
          "rabbitmq-restart", "redis-restart", "postgres-restart", "telegram-429-then-5xx",
          "payment-provider-timeout", "vpn-backend-down"]


@pytest.mark.skipif(subprocess.run(["which", "rabbitmqctl", "redis-server", "pg_ctlcluster"],
                                   capture_output=True).returncode != 0,
                    reason="needs the local rabbitmqctl, redis-server and pg_ctlcluster")
@pytest.mark.parametrize("fault", FAULTS)
async def test_fault_matrix(stack, gateway_url, emulator_url, fault):
    run = uuid.uuid4().hex[:6]
    dlq_before = {q: await queue_depth(q) for q in DLQS}
    miner_stop = asyncio.Event()

    async def miner():  # blocks keep coming, whatever the fault
        c = await new_customer(gateway_url)
        try:
            while not miner_stop.is_set():
                try:
                    await c.post("/sandbox/blocks", json={"count": 1})
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.3)
        finally:
            await c.aclose()

    mining = asyncio.create_task(miner())
    before = asyncio.create_task(workload(gateway_url, run))  # in flight when the fault hits
    await asyncio.sleep(1.0)
    provider_errors = _provider_errors(stack, "observe")
    heal = await asyncio.to_thread(inject, stack, fault)
    during = asyncio.create_task(workload(gateway_url, run + "d", purchases=4, tickets=2))
    await asyncio.sleep(3.0)
    if fault == "payment-provider-timeout":  # the outage is felt, not just switched on: it
        # lasts until a payment check failed (on a fast machine the first invoices may be
        # settled before it starts, and the later ones not yet created after 3 s)
        felt = time.monotonic() + 30
        while (await asyncio.to_thread(_provider_errors, stack, "observe") <= provider_errors
               and time.monotonic() < felt):
            await asyncio.sleep(0.2)
        assert await asyncio.to_thread(_provider_errors, stack, "observe") > provider_errors
    await asyncio.to_thread(heal)
    (inv1, conv1), (inv2, conv2) = await before, await during
    invoices, conversations = inv1 + inv2, conv1 + conv2

    # operator replies to every conversation once its topic exists
    topics: dict[str, int] = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(topics) < len(conversations):
        calls = httpx.get(f"{emulator_url}/_emulator/calls",
                          params={"method": "createForumTopic"}, timeout=10).json()["calls"]
        for tid, _ in conversations:
            for tc in calls:
                if tid[:6] in tc["params"]["name"]:
                    topics[tid] = tc["result"]["message_thread_id"]
        await asyncio.sleep(0.5)
    assert len(topics) == len(conversations), "a ticket never reached the support chat"
    replies = {}
    for tid, thread in topics.items():
        text = f"[{run}-r-{tid[:6]}]"
        r = httpx.post(f"{emulator_url}/_emulator/updates", json={
            "chat_id": SUPPORT_CHAT, "from_id": 1001, "text": text,
            "message_thread_id": thread}, timeout=30)
        assert r.status_code == 200 and r.json()["status_code"] == 200
        replies[tid] = text

    markers = [m for _, ms in conversations for m in ms]
    db = await asyncpg.connect(ADMIN_DSN)  # opened after the fault: a restart closes connections
    try:
        await _check(db, emulator_url, fault, invoices, conversations, markers, replies,
                     dlq_before, miner_stop, mining)
    finally:
        await db.close()


async def _check(db, emulator_url, fault, invoices, conversations, markers, replies, dlq_before,
                 miner_stop, mining) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        provisioned = await db.fetchval(
            "SELECT count(*) FROM provisioning.grants WHERE applied_at IS NOT NULL AND "
            "invoice_id = ANY($1::text[])", invoices)
        texts = [c["params"]["text"] for c in httpx.get(
            f"{emulator_url}/_emulator/calls", params={"method": "sendMessage"},
            timeout=10).json()["calls"]]
        delivered = sum(1 for m in markers if any(m in t for t in texts))
        landed = await db.fetchval("SELECT count(*) FROM tickets.messages WHERE body = "
                                   "ANY($1::text[])", list(replies.values()))
        if provisioned >= len(invoices) and delivered == len(markers) and landed >= len(replies):
            break
        await asyncio.sleep(1)
    miner_stop.set()
    await mining

    grants = await db.fetch("SELECT invoice_id, count(*) AS n FROM provisioning.grants WHERE "
                            "invoice_id = ANY($1::text[]) GROUP BY invoice_id", invoices)
    chat_counts = {m: sum(1 for t in texts if m in t) for m in markers}
    reply_rows = await db.fetch("SELECT body, count(*) AS n FROM tickets.messages WHERE body = "
                                "ANY($1::text[]) GROUP BY body", list(replies.values()))
    sent = len(invoices) + len(markers) + len(replies)
    got = len(grants) + sum(1 for c in chat_counts.values() if c) + len(reply_rows)
    duplicated = (sum(g["n"] - 1 for g in grants) + sum(max(0, c - 1) for c in
                  chat_counts.values()) + sum(r["n"] - 1 for r in reply_rows))
    print(f"\nFAULT {fault}: sent={sent} delivered={got} duplicated={duplicated} "
          f"lost={sent - got}")
    assert duplicated == 0 and got == sent
    stuck = await db.fetchval("SELECT count(*) FROM billing.invoices WHERE status IN "
                              "('CREATED', 'PENDING') AND id = ANY($1::text[])", invoices)
    assert stuck == 0
    # rows made after the last marker (a topic's title, the card) are paced into the group:
    # nothing stuck means they all go out within moments, not that none is still on its way
    tickets = [t for t, _ in conversations]
    pending = -1
    settle = time.monotonic() + 30
    while time.monotonic() < settle and pending != 0:
        pending = await db.fetchval("SELECT count(*) FROM telegram.outgoing WHERE status = "
                                    "'PENDING' AND ticket_id = ANY($1::text[])", tickets)
        if pending:
            await asyncio.sleep(0.5)
    assert pending == 0
    for q in DLQS:
        assert await queue_depth(q) == dlq_before[q], f"new dead letters in {q}"


async def test_fault_moves_survive_a_provisioner_worker_kill(stack, gateway_url):
    """Row `kill:provisioner` during moves of an access: customers change location, the
    provisioner worker is killed while their moves run and started again; every move ends
    DONE once, each customer on exactly one enabled account on the new server, none left
    enabled on the old one."""
    prov, admin = stack.api_url("provisioner"), _admin_header(stack, "provisioner")
    location = f"fm-{uuid.uuid4().hex[:6]}"
    r = httpx.post(f"{prov}/internal/admin/servers", headers=admin, timeout=10, json={
        "name": location, "location": location, "backend": "sandbox", "capacity": 20})
    assert r.status_code == 201, r.text
    target = r.json()["server"]["id"]
    bought = await buy_many(gateway_url, 6)
    db = await asyncpg.connect(ADMIN_DSN)
    try:
        invoices = [invoice["id"] for _, invoice in bought]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and await db.fetchval(
                "SELECT count(*) FROM provisioning.grants WHERE status = 'APPLIED' AND "
                "invoice_id = ANY($1::text[])", invoices) < len(invoices):
            await asyncio.sleep(0.5)
        subs = {r["invoice_id"]: r["subscription_id"] for r in await db.fetch(
            "SELECT invoice_id, subscription_id FROM provisioning.grants WHERE "
            "invoice_id = ANY($1::text[])", invoices)}
        assert len(subs) == len(invoices)
        old_refs = [r["provision_ref"] for r in await db.fetch(
            "SELECT provision_ref FROM provisioning.subscriptions WHERE id = ANY($1::text[])",
            list(subs.values()))]
        # the new server refuses its first creates, so moves are mid-way when the worker dies
        faults = FaultSwitch(stack.env["REDIS_URL"],
                             f"{stack.env['JOBS_PREFIX']}:provisioner:sandbox-faults:{target}")
        await faults.add("ensure_active", message="new server slow", count=8)
        answers = await asyncio.gather(*(
            call(c, "PUT", f"/subscriptions/{subs[invoice['id']]}/location",
                 json={"location_id": location}) for c, invoice in bought))
        assert [a.status_code for a in answers] == [202] * len(bought)
        heal = await asyncio.to_thread(inject, stack, "kill:provisioner")
        await asyncio.to_thread(heal)
        await faults.close()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and await db.fetchval(
                "SELECT count(*) FROM provisioning.moves WHERE status = 'DONE' AND "
                "subscription_id = ANY($1::text[])", list(subs.values())) < len(subs):
            await asyncio.sleep(0.5)
        moves = await db.fetch("SELECT subscription_id, status FROM provisioning.moves "
                               "WHERE subscription_id = ANY($1::text[])", list(subs.values()))
        enabled = await db.fetch(
            "SELECT s.id, a.server FROM provisioning.subscriptions s JOIN "
            "provisioning.sandbox_vpn_accounts a ON a.ref = s.provision_ref "
            "WHERE s.id = ANY($1::text[]) AND a.enabled", list(subs.values()))
        leftovers = await db.fetchval(
            "SELECT count(*) FROM provisioning.sandbox_vpn_accounts WHERE enabled AND "
            "ref = ANY($1::text[])", old_refs)
    finally:
        await db.close()
        for c, _ in bought:
            await c.aclose()
    print(f"\nFAULT kill:provisioner during moves: moved={len(moves)} "
          f"done={sum(m['status'] == 'DONE' for m in moves)} leftovers={leftovers}")
    assert sorted(m["subscription_id"] for m in moves) == sorted(subs.values())  # once each
    assert {m["status"] for m in moves} == {"DONE"}
    assert sorted(e["id"] for e in enabled) == sorted(subs.values())
    assert {e["server"] for e in enabled} == {target} and leftovers == 0
