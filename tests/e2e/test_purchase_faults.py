"""Purchases under faults and with replicas: every paid invoice is provisioned exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time

import pytest
import redis as redis_sync

from tests.conftest import metric_total, test_env, wait_for
from tests.e2e.purchases import buy_many
from tests.e2e.test_scaling import _metrics_up

# The counts (300 and 200) are the defaults of a full run; CI may lower them to keep the
# suite's time bounded on 2 cores (FAULT_PURCHASES / REPLICA_PURCHASES).
FAULT_PURCHASES = int(os.environ.get("FAULT_PURCHASES", "300"))
REPLICA_PURCHASES = int(os.environ.get("REPLICA_PURCHASES", "200"))


async def _wait_all_provisioned(db, invoice_ids: list[str], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        done = await db.fetchval("SELECT count(*) FROM provisioning.grants WHERE applied_at IS "
                                 "NOT NULL AND invoice_id = ANY($1::text[])", invoice_ids)
        if done >= len(invoice_ids):
            return
        await asyncio.sleep(1)
    raise AssertionError(f"only {done}/{len(invoice_ids)} invoices provisioned")


async def _assert_exactly_once(db, invoice_ids: list[str]) -> dict:
    paid = await db.fetchval("SELECT count(*) FROM billing.invoices WHERE status = 'PAID' AND "
                             "id = ANY($1::text[])", invoice_ids)
    events = await db.fetchval(
        "SELECT count(*) FROM billing.outbox WHERE routing_key = 'billing.invoice.paid.v1' AND "
        "envelope->'payload'->>'invoice_id' = ANY($1::text[])", invoice_ids)
    grants = await db.fetch("SELECT invoice_id, count(*) AS n FROM provisioning.grants WHERE "
                            "invoice_id = ANY($1::text[]) GROUP BY invoice_id", invoice_ids)
    users = await db.fetchval("SELECT count(DISTINCT user_id) FROM billing.invoices WHERE "
                              "id = ANY($1::text[])", invoice_ids)
    active = await db.fetchval(
        "SELECT count(*) FROM provisioning.subscriptions s WHERE s.status = 'ACTIVE' AND "
        "s.user_id IN (SELECT user_id FROM billing.invoices WHERE id = ANY($1::text[]))",
        invoice_ids)
    accounts = await db.fetchval(
        "SELECT count(*) FROM provisioning.backend_accounts a JOIN provisioning.subscriptions s "
        "ON s.id = a.subscription_id WHERE s.user_id IN (SELECT user_id FROM billing.invoices "
        "WHERE id = ANY($1::text[]))", invoice_ids)
    n = len(invoice_ids)
    assert paid == n and events == n, (paid, events)
    assert len(grants) == n and all(g["n"] == 1 for g in grants)
    assert active == users == n and accounts == n, (active, users, accounts)
    return {"sent": n, "provisioned": len(grants), "duplicated": sum(g["n"] - 1 for g in grants),
            "lost": n - len(grants)}


def _restart_redis() -> None:
    url = test_env()["REDIS_URL"]
    try:
        redis_sync.Redis.from_url(url).shutdown(nosave=True)
    except redis_sync.exceptions.ConnectionError:
        pass  # the server closes the connection as it stops
    subprocess.run(["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1",
                    "--port", "6379", "--save", "", "--appendonly", "no",
                    "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log"],
                   check=True, timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if redis_sync.Redis.from_url(url).ping():
                return
        except redis_sync.exceptions.ConnectionError:
            time.sleep(0.2)
    raise AssertionError("redis did not come back")


def _rabbitmq(action: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", action], check=True, timeout=120,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.skipif(subprocess.run(["which", "rabbitmqctl", "redis-server"],
                                   capture_output=True).returncode != 0,
                    reason="needs local rabbitmqctl and redis-server")
@pytest.mark.serial
@pytest.mark.timeout(900)
async def test_purchases_while_workers_killed_and_broker_and_redis_restart(
        stack, gateway_url, db):
    buying = asyncio.create_task(buy_many(gateway_url, FAULT_PURCHASES))
    await asyncio.sleep(8)
    stack.kill("provisioner-worker")  # SIGKILL mid-flow
    stack.kill("billing-worker")
    _rabbitmq("stop_app")
    await asyncio.sleep(1)
    _rabbitmq("start_app")
    stack.start_service("billing", "worker")
    _restart_redis()
    stack.start_service("provisioner", "worker")
    bought = await buying
    invoice_ids = [inv["id"] for _, inv in bought]
    await _wait_all_provisioned(db, invoice_ids)
    counts = await _assert_exactly_once(db, invoice_ids)
    stuck = await db.fetchval("SELECT count(*) FROM billing.invoices WHERE status IN "
                              "('CREATED', 'PENDING') AND id = ANY($1::text[])", invoice_ids)
    assert stuck == 0
    print(f"faults: billing+provisioner SIGKILL, rabbitmq restart, redis restart; {counts}")
    for c, _ in bought:
        await c.aclose()


@pytest.mark.timeout(900)
async def test_two_provisioner_replicas_share_purchases(stack, gateway_url, db):
    stack.start_service("provisioner", "worker", replica=2)
    ports = [stack.worker_metrics_port("provisioner", r) for r in (1, 2)]
    await asyncio.to_thread(wait_for, lambda: all(_metrics_up(p) for p in ports), 120, 0.5,
                            "both provisioner replicas serving metrics")
    # each replica applies grants (inline from the shared queue, or from provision jobs)
    before = [metric_total(p, "provisioner_provisions_total", outcome="activated")
              for p in ports]
    bought = await buy_many(gateway_url, REPLICA_PURCHASES)
    invoice_ids = [inv["id"] for _, inv in bought]
    await _wait_all_provisioned(db, invoice_ids)
    await _assert_exactly_once(db, invoice_ids)
    after = [metric_total(p, "provisioner_provisions_total", outcome="activated")
             for p in ports]
    did = [a - b for a, b in zip(after, before, strict=True)]
    assert all(d > 0 for d in did), f"both replicas should have provisioned: {did}"
    stack.kill("provisioner-worker-2", signal.SIGTERM)
    for c, _ in bought:
        await c.aclose()


async def test_a_schedule_runs_once_per_slot_with_two_replicas(stack):
    """Two billing worker replicas: payment_watch runs once per interval in all, not per replica."""
    stack.start_service("billing", "worker", replica=2)
    every = int(stack.env["PAYMENT_WATCH_INTERVAL_MS"]) / 1000
    ports = [stack.worker_metrics_port("billing", r) for r in (1, 2)]

    def runs() -> float:
        return sum(metric_total(p, "jobs_handled_total", queue="payment_watch",
                                name="payment_watch") for p in ports)

    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # both replicas up and taking jobs
            try:
                if all(metric_total(p, "jobs_handled_total", queue="payment_watch") > 0
                       for p in ports):
                    break
            except Exception:
                pass
            await asyncio.sleep(0.5)
        window = 8.0
        start, t0 = runs(), time.monotonic()
        await asyncio.sleep(window)
        ran, elapsed = runs() - start, time.monotonic() - t0
    finally:
        stack.kill("billing-worker-2", signal.SIGTERM)
    slots = elapsed / every
    assert ran >= 1
    # one run per slot (a little slack for slots at the window's edges), never one per replica
    assert ran <= slots + 2, f"{ran} runs in {slots:.1f} slots"
