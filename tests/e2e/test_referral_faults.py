"""Referral rewards under a RabbitMQ restart: referred customers sign up and pay while the broker
stops and starts, and each referrer is rewarded exactly once, in money mode (a ledger entry) and
in days mode (billing restarted with REFERRAL_REWARD_DAYS; a provisioner grant)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from datetime import timedelta

import pytest

from tests.conftest import payment_option, register, sql, wait_for
from tests.e2e.test_purchase_faults import _rabbitmq
from tests.e2e.test_referrals import plan_priced, sign_up, user_id_of
from tests.e2e.test_scaling import _metrics_up

PAIRS = 4  # referrers, each with one referred customer

pytestmark = [pytest.mark.serial, pytest.mark.skipif(
    subprocess.run(["which", "rabbitmqctl"], capture_output=True).returncode != 0,
    reason="needs a local rabbitmqctl")]


@contextmanager
def billing_with(stack, extra: dict[str, str]):
    """Billing's processes restarted with `extra` in their environment, then as they were."""

    def restart(env: dict[str, str]) -> None:
        for name in [n for n in stack.procs if n.startswith("billing-")]:
            stack.kill(name, signal.SIGTERM)
        stack.start_process("billing-api", [sys.executable, "-m", "billing", "api"], env)
        port = stack.worker_metrics_port("billing")
        stack.start_process("billing-worker", [sys.executable, "-m", "billing", "worker"],
                            {**env, "WORKER_METRICS_PORT": str(port)})
        stack.wait_http(stack.api_url("billing") + "/readyz")
        wait_for(lambda: _metrics_up(port), 120, 0.5, "billing's worker up")

    restart(extra)
    try:
        yield
    finally:
        restart({})


def buy_from_balance(admin_client, client, plan: dict) -> dict:
    """The customer's balance funded by an admin, then the plan bought from it (PAID at once)."""
    user_id = user_id_of(client)
    r = admin_client.post(f"/admin/users/{user_id}/balance/adjustments",
                          headers={"Idempotency-Key": uuid.uuid4().hex},
                          json={"amount_usd": plan["price_usd"], "note": "fault test"})
    assert r.status_code == 201, r.text
    option = payment_option(client)
    r = client.post("/invoices", headers={"Idempotency-Key": uuid.uuid4().hex},
                    json={"plan_id": plan["id"], **option, "pay_with": "balance"})
    assert r.status_code == 201 and r.json()["invoice"]["status"] == "PAID", r.text
    return r.json()["invoice"]


def pay_through_a_broker_restart(admin_client, friends: list, plan: dict) -> None:
    """Half paid before the broker stops (their events in flight), half while it is down."""
    half = len(friends) // 2
    for friend in friends[:half]:
        buy_from_balance(admin_client, friend, plan)
    _rabbitmq("stop_app")
    try:
        for friend in friends[half:]:
            buy_from_balance(admin_client, friend, plan)
        time.sleep(1)
    finally:
        _rabbitmq("start_app")


def rewarded_events(friend_ids: list[str]) -> dict[str, int]:
    rows = sql("SELECT envelope->'payload'->>'referred_user_id' AS friend, count(*) AS n FROM "
               "billing.outbox WHERE routing_key = 'billing.referral.rewarded.v1' AND "
               "envelope->'payload'->>'referred_user_id' = ANY($1::text[]) GROUP BY 1",
               friend_ids)
    return {r["friend"]: r["n"] for r in rows}


@pytest.mark.timeout(600)
def test_money_rewards_once_each_through_a_broker_restart(stack, gateway_url, admin_client):
    plan = plan_priced(admin_client, "10.00")
    referrers = [register(gateway_url) for _ in range(PAIRS)]
    referrer_ids = [user_id_of(r) for r in referrers]
    # Signed up just before the broker stops: their referrals are recorded after it is back,
    # some after their invoice was paid (the referral finds the paid invoice then).
    friends = [sign_up(gateway_url, r.get("/referrals").json()["code"]) for r in referrers]
    pay_through_a_broker_restart(admin_client, friends, plan)

    def rewards() -> list[dict]:
        return sql("SELECT user_id, amount_usd FROM billing.balance_entries WHERE kind = "
                   "'REFERRAL_REWARD' AND user_id = ANY($1::text[])", referrer_ids)

    wait_for(lambda: len(rewards()) >= PAIRS, 120, 0.5, "every referrer rewarded")
    time.sleep(3)  # anything duplicated would have come by now
    rows = rewards()
    assert sorted(r["user_id"] for r in rows) == sorted(referrer_ids)
    assert {str(r["amount_usd"]) for r in rows} == {"1.00"}
    friend_ids = [user_id_of(f) for f in friends]
    assert rewarded_events(friend_ids) == {f: 1 for f in friend_ids}
    print(f"faults: rabbitmq restart, money mode; {PAIRS} referrers rewarded once each")


@pytest.mark.timeout(600)
def test_days_rewards_once_each_through_a_broker_restart(stack, gateway_url, admin_client):
    plan = plan_priced(admin_client, "10.00")
    with billing_with(stack, {"REFERRAL_REWARD_DAYS": "5"}):
        referrers = [register(gateway_url) for _ in range(PAIRS)]
        for referrer in referrers:
            buy_from_balance(admin_client, referrer, plan)
        referrer_ids = [user_id_of(r) for r in referrers]

        def subscriptions() -> dict[str, object]:
            rows = sql("SELECT user_id, expires_at FROM provisioning.subscriptions WHERE "
                       "status = 'ACTIVE' AND user_id = ANY($1::text[])", referrer_ids)
            return {r["user_id"]: r["expires_at"] for r in rows}

        before = wait_for(lambda: len(subscriptions()) == PAIRS and subscriptions(), 120, 0.5,
                          "the referrers' subscriptions")
        friends = [sign_up(gateway_url, r.get("/referrals").json()["code"]) for r in referrers]
        friend_ids = [user_id_of(f) for f in friends]
        wait_for(lambda: sql("SELECT count(*) AS n FROM billing.referrals WHERE "
                             "referred_user_id = ANY($1::text[])", friend_ids)[0]["n"] == PAIRS,
                 60, 0.5, "the referrals recorded")
        pay_through_a_broker_restart(admin_client, friends, plan)

        def grants() -> list[dict]:
            return sql("SELECT user_id, status, previous_expires_at, new_expires_at FROM "
                       "provisioning.grants WHERE kind = 'REFERRAL' AND user_id = ANY($1::text[])",
                       referrer_ids)

        wait_for(lambda: sum(g["status"] == "APPLIED" for g in grants()) >= PAIRS, 120, 0.5,
                 "every referrer's days added")
        time.sleep(3)
        rows = grants()
        assert sorted(g["user_id"] for g in rows) == sorted(referrer_ids)
        assert all(g["new_expires_at"] - g["previous_expires_at"] == timedelta(days=5)
                   for g in rows)
        after = subscriptions()
        assert {u: after[u] - before[u] for u in referrer_ids} == {
            u: timedelta(days=5) for u in referrer_ids}
        assert rewarded_events(friend_ids) == {f: 1 for f in friend_ids}
        assert sql("SELECT count(*) AS n FROM billing.balance_entries WHERE kind = "
                   "'REFERRAL_REWARD' AND user_id = ANY($1::text[])", referrer_ids)[0]["n"] == 0
    print(f"faults: rabbitmq restart, days mode; {PAIRS} referrers given 5 days once each")
