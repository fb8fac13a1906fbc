"""Subscription events reach linked users as bot messages; `/status` shows the latest state."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx

from contracts import make_envelope
from contracts.provisioning import SubscriptionActivatedV1, SubscriptionExpiringV1
from tests.conftest import publish_envelope, register, sql, wait_for
from tests.e2e.test_support_flow import calls


def link_telegram(client: httpx.Client, emulator_url: str) -> int:
    """Link the client's account to a new Telegram user through the bot; returns its id."""
    token = re.search(r"start=(\S+)$", client.post("/auth/telegram-link").json()["url"]).group(1)
    tg_user = 600000 + uuid.uuid4().int % 100000
    say(emulator_url, tg_user, f"/start {token}")
    wait_for(lambda: client.get("/auth/me").json()["user"]["telegram"]["linked"],
             message="account linked")
    return tg_user


def say(emulator_url: str, tg_user: int, text: str) -> None:
    r = httpx.post(f"{emulator_url}/_emulator/updates", json={
        "chat_id": tg_user, "from_id": tg_user, "text": text, "chat_type": "private"}, timeout=15)
    assert r.status_code == 200 and r.json()["status_code"] == 200


def bot_texts(emulator_url: str, tg_user: int) -> list[str]:
    return [c["params"]["text"] for c in calls(emulator_url, "sendMessage", chat_id=tg_user)]


async def test_activation_and_reminder_reach_the_linked_user_once(gateway_url, emulator_url):
    client = register(gateway_url)
    user_id = client.get("/auth/me").json()["user"]["id"]
    tg_user = link_telegram(client, emulator_url)
    expires = datetime.now(UTC) + timedelta(days=30)
    activated = make_envelope(SubscriptionActivatedV1(
        subscription_id=uuid.uuid4().hex, user_id=user_id, plan_id="p1", invoice_id="i1",
        started_at=datetime.now(UTC), expires_at=expires, max_devices=3), producer="provisioner")
    body = activated.model_dump(mode="json")
    await publish_envelope(body, activated.routing_key)
    await publish_envelope(body, activated.routing_key)  # a duplicate delivery
    reminder = make_envelope(SubscriptionExpiringV1(
        subscription_id="s1", user_id=user_id, expires_at=expires, days_left=3),
        producer="provisioner")
    await publish_envelope(reminder.model_dump(mode="json"), reminder.routing_key)

    wait_for(lambda: any("ends in 3 days" in t for t in bot_texts(emulator_url, tg_user)),
             message="reminder")
    active = [t for t in bot_texts(emulator_url, tg_user) if "subscription is active until" in t]
    assert len(active) == 1 and expires.strftime("%Y-%m-%d") in active[0]

    say(emulator_url, tg_user, "/status")
    wait_for(lambda: any(t.startswith("Subscription: active until")
                         for t in bot_texts(emulator_url, tg_user)), message="/status answer")


def test_a_blocked_user_gets_no_ticket_from_the_bot_and_status_says_blocked(
        gateway_url, emulator_url, admin_client):
    client = register(gateway_url)
    user_id = client.get("/auth/me").json()["user"]["id"]
    tg_user = link_telegram(client, emulator_url)
    r = admin_client.post(f"/admin/users/{user_id}/block")
    assert r.status_code == 200, r.text
    wait_for(lambda: sql("SELECT blocked FROM telegram.user_blocks WHERE user_id = $1",
                         user_id) == [{"blocked": True}], message="block event at the bot")

    def blocked_answers() -> list[str]:
        return [t for t in bot_texts(emulator_url, tg_user) if "account is blocked" in t]

    say(emulator_url, tg_user, "Please open a ticket")
    wait_for(lambda: len(blocked_answers()) == 1, message="blocked answer")
    say(emulator_url, tg_user, "/status")
    wait_for(lambda: len(blocked_answers()) == 2, message="/status says blocked")
    outcomes = sql("SELECT outcome FROM telegram.received_updates"
                   " WHERE (payload->'message'->'from'->>'id')::bigint = $1"
                   " ORDER BY update_id", tg_user)
    assert [o["outcome"] for o in outcomes][-2:] == ["blocked", "blocked"]
    assert sql("SELECT count(*) AS n FROM tickets.tickets WHERE user_id = $1",
               user_id) == [{"n": 0}]

    r = admin_client.post(f"/admin/users/{user_id}/unblock")
    assert r.status_code == 200, r.text
    wait_for(lambda: sql("SELECT blocked FROM telegram.user_blocks WHERE user_id = $1",
                         user_id) == [{"blocked": False}], message="unblock event at the bot")
    say(emulator_url, tg_user, "Back again")
    wait_for(lambda: sql("SELECT count(*) AS n FROM tickets.tickets WHERE user_id = $1",
                         user_id) == [{"n": 1}], message="ticket after unblock")
