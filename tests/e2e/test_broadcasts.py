"""A broadcast end to end on the shared stack: an admin creates it through the gateway,
previews it to one Telegram account, sends it to a segment of emulated recipients, and it ends
DONE with each recipient told once and the one who blocked the bot counted as such."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx

from contracts import make_envelope
from contracts.provisioning import SubscriptionExpiredV1
from tests.conftest import publish_envelopes, register, sql, wait_for
from tests.e2e.test_telegram_notifications import bot_texts, link_telegram

TEXT = f"Come back: 20% off this week ({uuid.uuid4().hex[:6]})"


def test_a_broadcast_goes_to_its_segment_once_each_and_ends_done(
        gateway_url, emulator_url, admin_client):
    clients = [register(gateway_url) for _ in range(3)]
    users = [c.get("/auth/me").json()["user"]["id"] for c in clients]
    tg = [link_telegram(c, emulator_url) for c in clients]
    expired = [make_envelope(SubscriptionExpiredV1(
        subscription_id=uuid.uuid4().hex, user_id=u,
        expired_at=datetime.now(UTC) - timedelta(days=2)), producer="provisioner")
        for u in users]
    asyncio.run(publish_envelopes([(e.model_dump(mode="json"), e.routing_key) for e in expired]))
    wait_for(lambda: len(sql("SELECT 1 FROM telegram.customer_facts f JOIN"
                             " telegram.subscription_view v USING (user_id)"
                             " WHERE user_id = ANY($1) AND v.status = 'EXPIRED'"
                             " AND f.expired_at IS NOT NULL", users)) == 3,
             message="the expiries known to the bot")
    httpx.post(f"{emulator_url}/_emulator/users/{tg[2]}/block", json={"blocked": True})

    r = admin_client.post("/admin/broadcasts", json={
        "text_en": TEXT, "text_ru": TEXT, "segment": "expired_30d",
        "buttons": [{"text": "Renew", "url": "https://vpn.example/app/buy"}]})
    assert r.status_code == 201, r.text
    bid = r.json()["broadcast"]["id"]
    r = admin_client.post(f"/admin/broadcasts/{bid}/preview", json={"telegram_user_id": tg[0]})
    assert r.status_code == 200 and r.json()["sent"], r.text
    assert bot_texts(emulator_url, tg[0]).count(TEXT) == 1
    assert admin_client.post(f"/admin/broadcasts/{bid}/resume").status_code == 409

    assert admin_client.post(f"/admin/broadcasts/{bid}/send").status_code == 200
    done = wait_for(lambda: (b := admin_client.get(f"/admin/broadcasts/{bid}").json()[
        "broadcast"])["status"] == "DONE" and b, timeout=60, message="broadcast done")
    assert done["planned"] and done["total"] >= 3 and done["finished_at"]
    assert done["sent"] + done["failed"] + done["blocked_by_user"] == done["total"]
    assert done["blocked_by_user"] >= 1
    assert bot_texts(emulator_url, tg[0]).count(TEXT) == 2  # the preview and the broadcast
    assert bot_texts(emulator_url, tg[1]).count(TEXT) == 1
    rows = sql("SELECT user_id, state FROM telegram.broadcast_recipients"
               " WHERE broadcast_id = $1 AND user_id = ANY($2)", bid, users)
    assert {r["user_id"]: r["state"] for r in rows} == {
        users[0]: "SENT", users[1]: "SENT", users[2]: "BLOCKED"}
    assert admin_client.post(f"/admin/broadcasts/{bid}/cancel").status_code == 409
