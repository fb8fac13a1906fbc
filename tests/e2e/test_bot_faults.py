"""Bot shop fault rows (issue 21): the telegram worker SIGKILLed while a purchase's messages are
being edited, and a storm of Telegram 429s during a burst of notices. Afterwards every message
the customer should get is there once: the invoice message edited to paid (never posted again),
one paid notice, one access message; every notice of the burst once, in the order it was made
in its chat."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from contracts import make_envelope
from contracts.provisioning import SubscriptionExtendedV1
from tests.conftest import publish_envelope, register, sql, wait_for
from tests.e2e.test_telegram_notifications import link_telegram, say
from tests.e2e.test_telegram_shop import buttons, photo_digests, shown, step


def calls(emulator_url: str, method: str, chat: int) -> list[dict]:
    r = httpx.get(f"{emulator_url}/_emulator/calls", params={"method": method, "chat_id": chat},
                  timeout=15)
    return r.json()["calls"]


def fault(emulator_url: str, **spec) -> None:
    r = httpx.post(f"{emulator_url}/_emulator/faults", json=spec, timeout=15)
    assert r.status_code == 200, r.text


def remaining(emulator_url: str) -> int:
    faults = httpx.get(f"{emulator_url}/_emulator/faults", timeout=15).json()["faults"]
    return sum(f["remaining"] or 0 for f in faults)


@pytest.mark.serial  # SIGKILLs the stack's telegram worker
def test_worker_sigkill_while_a_purchase_is_edited(stack, gateway_url, emulator_url,
                                                   admin_client):
    plan = admin_client.post("/admin/plans", json={
        "name": f"Fault plan {uuid.uuid4().hex[:6]}", "price_usd": "5.00", "duration_days": 30,
        "max_devices": 1}).json()["plan"]
    client = register(gateway_url)
    chat = link_telegram(client, emulator_url)
    say(emulator_url, chat, "/buy")
    screen = wait_for(lambda: next((m for m in shown(emulator_url, chat).values()
                                    if f"p:{plan['id']}" in buttons(m)), None),
                      message="the plans")
    msg = screen["message_id"]
    screen = step(emulator_url, chat, msg, f"p:{plan['id']}", "How do you want to pay?")
    sandbox = next(d for d, text in buttons(screen).items()
                   if d.startswith("o:") and "sandbox" in text.lower())
    step(emulator_url, chat, msg, sandbox, "Payment:")
    step(emulator_url, chat, msg, "c", "waiting for payment")
    [invoice] = sql("SELECT id, address, amount_asset, asset, network FROM billing.invoices"
                    " WHERE plan_id = $1", plan["id"])
    photos_before = len(photo_digests(emulator_url, chat))

    # the status line's edits meet 429s (each waits 2 s in the job): the worker dies mid-edit
    fault(emulator_url, status=429, retry_after=2, methods=["editMessageText"], count=3)
    r = client.post("/sandbox/transfers", json={
        "address": invoice["address"], "amount_asset": str(invoice["amount_asset"]),
        "asset": invoice["asset"], "network": invoice["network"]})
    assert r.status_code == 201, r.text
    client.post("/sandbox/blocks", json={"count": 3})
    wait_for(lambda: remaining(emulator_url) < 3, timeout=40, message="an edit refused")
    stack.kill("telegram-worker")
    stack.start_service("telegram", "worker")

    wait_for(lambda: "Status: ✅ paid" in shown(emulator_url, chat)[msg]["text"], timeout=60,
             message="the invoice message edited to paid after the restart")
    wait_for(lambda: len(photo_digests(emulator_url, chat)) > photos_before, timeout=60,
             message="the access message after the restart")
    def paid_notices() -> list[dict]:
        return [m for m in shown(emulator_url, chat).values()
                if m.get("text", "").startswith(f"✅ Invoice {invoice['id']} is paid")]

    # the grant's event may come before billing's paid event: the notice can follow the access
    wait_for(paid_notices, timeout=60, message="the paid notice after the restart")
    assert len(paid_notices()) == 1
    assert len(photo_digests(emulator_url, chat)) == photos_before + 1  # one access QR
    invoice_messages = [m for m in shown(emulator_url, chat).values()
                        if invoice["id"] in m.get("text", "") and "Status:" in m["text"]]
    assert [m["message_id"] for m in invoice_messages] == [msg]  # edited, never re-sent
    # nothing stuck: the chat's last rows (paced behind the access message) all go out
    wait_for(lambda: not sql("SELECT 1 FROM telegram.outgoing WHERE chat_id = $1"
                             " AND status = 'PENDING'", chat), timeout=30,
             message="the chat's rows all sent")
    rows = sql("SELECT status, count(*) AS n FROM telegram.outgoing WHERE chat_id = $1"
               " GROUP BY status", chat)
    assert {r["status"] for r in rows} == {"SENT"}


def test_a_429_storm_during_a_burst_of_notices(gateway_url, emulator_url):
    """Six notices to each of three chats while Telegram answers 429 to every send for 4 s."""
    chats = {}
    for _ in range(3):
        client = register(gateway_url)
        chats[client.get("/auth/me").json()["user"]["id"]] = link_telegram(client, emulator_url)
    failed_before = httpx.get(f"{emulator_url}/_emulator/stats", timeout=15).json()["failed"]
    fault(emulator_url, status=429, retry_after=1, methods=["sendMessage"], for_seconds=4)
    base = datetime(2031, 1, 1, tzinfo=UTC)
    sent_days = {}
    for user_id in chats:
        for i in range(6):
            until = base + timedelta(days=i)
            event = SubscriptionExtendedV1(
                subscription_id=f"sub-{user_id[:8]}", user_id=user_id, invoice_id=None,
                previous_expires_at=until - timedelta(days=1), expires_at=until, days_added=1,
                reason="burst")
            env = make_envelope(event, producer="provisioner")
            asyncio.run(publish_envelope(env.model_dump(mode="json"), env.routing_key))
            sent_days.setdefault(user_id, []).append(f"{until:%Y-%m-%d}")

    def notices(chat: int) -> list[str]:
        return [day for c in calls(emulator_url, "sendMessage", chat)
                for day in [c["params"]["text"]] if "2031-01-0" in day]

    for user_id, chat in chats.items():
        got = wait_for(lambda chat=chat: len(notices(chat)) >= 6 and notices(chat),
                       timeout=90, message="every notice of the burst")
        days = [next(d for d in sent_days[user_id] if d in text) for text in got]
        assert sorted(days) == sorted(sent_days[user_id])  # each once, none lost
        made = [r["text"] for r in sql(
            "SELECT params->>'text' AS text FROM telegram.outgoing WHERE chat_id = $1"
            " AND params->>'text' LIKE '%2031-01-0%' ORDER BY id", chat)]
        assert got == made  # in the order they were made in the chat
    # the storm was met: sends were refused with 429 and tried again
    assert httpx.get(f"{emulator_url}/_emulator/stats", timeout=15).json()["failed"] > failed_before
