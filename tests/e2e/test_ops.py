"""Admin operations: queue depths, dead letters and their replay (audited)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import aio_pika
import orjson

from contracts import make_envelope
from contracts.telegram import SupportReplyReceivedV1
from tests.conftest import BROKER_PREFIX, register, test_env, wait_for
from tests.e2e.test_support_flow import SUPPORT_CHAT, get_ticket

QUEUE = "tickets.telegram-events"


async def _dead_letter(body: dict) -> None:
    """Put a message into the DLQ as if it had died there during an earlier outage."""
    conn = await aio_pika.connect(test_env()["RABBITMQ_URL"])
    try:
        ch = await conn.channel(publisher_confirms=True)
        ex = await ch.get_exchange(f"{BROKER_PREFIX}events.dlx")
        await ex.publish(aio_pika.Message(orjson.dumps(body), content_type="application/json",
                                          delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                          message_id=body["event_id"]),
                         routing_key=f"{BROKER_PREFIX}{QUEUE}")
    finally:
        await conn.close()


def test_dead_letter_is_listed_and_replayed(gateway_url, admin_client):
    customer = register(gateway_url)
    ticket = customer.post("/tickets", json={"subject": "Lost reply",
                                             "body": "where is it"}).json()["ticket"]
    env = make_envelope(SupportReplyReceivedV1(
        ticket_id=ticket["id"], body="Recovered from the dead-letter queue",
        operator_telegram_id=1001, chat_id=SUPPORT_CHAT, telegram_message_id=910001,
        update_id=910001, received_at=datetime.now(UTC)), producer="telegram")
    asyncio.run(_dead_letter(env.model_dump(mode="json")))

    assert customer.get("/admin/queues").status_code == 403
    overview = admin_client.get("/admin/queues")
    assert overview.status_code == 200, overview.text
    data = overview.json()
    assert {j["queue"] for j in data["jobs"]} >= {"notify", "payment_watch", "provision"}
    listed = [d for d in data["dead_letters"] if d["id"] == str(env.event_id)]
    assert listed and listed[0]["queue"] == QUEUE
    assert listed[0]["event_type"] == "telegram.support_reply.received"

    r = admin_client.post(f"/admin/dead-letters/{env.event_id}/replay")
    assert r.status_code == 200 and r.json()["replayed"] is True
    wait_for(lambda: any(m["body"] == "Recovered from the dead-letter queue"
                         for m in get_ticket(customer, ticket["id"])["messages"]),
             message="replayed reply on the ticket")
    assert all(d["id"] != str(env.event_id)
               for d in admin_client.get("/admin/queues").json()["dead_letters"])
    assert admin_client.post(f"/admin/dead-letters/{env.event_id}/replay").status_code == 404
    log = admin_client.get("/admin/audit-log").json()["entries"]
    outcomes = [e["outcome"] for e in log if e["action"] == "dead_letter.replay"
                and e["target_id"] == str(env.event_id)]
    assert "success" in outcomes and "refused:404" in outcomes
