"""The tickets consumer on FastStream's in-memory broker (the worker's subscriber, filters and
`Delivery` middleware, no RabbitMQ): each Telegram event lands its message once per event, and
one its contract refuses is rejected before the handler."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from contracts import Envelope, make_envelope
from contracts.telegram import SupportReplyReceivedV1, UserMessageReceivedV1
from runtime.metrics import MESSAGES_HANDLED
from runtime.testing import in_memory_bus
from tickets.consumers import QUEUE, build_subscription
from tickets.service import telegram_ref, ticket_service


def where() -> dict:
    """A chat and message no other test uses."""
    return {"chat_id": uuid.uuid4().int % 10**9, "telegram_message_id": uuid.uuid4().int % 10**9}


async def support_reply(db) -> Envelope:
    async with db.transaction() as s:
        ticket = await ticket_service.open(s, user_id=uuid.uuid4().hex, subject="Cannot connect",
                                           body="The app says timeout")
    return make_envelope(SupportReplyReceivedV1(
        ticket_id=ticket.id, body="Try the other server", operator_telegram_id=1, update_id=1,
        received_at=datetime.now(UTC), **where()), producer="telegram")


async def user_message(db) -> Envelope:
    return make_envelope(UserMessageReceivedV1(
        user_id=uuid.uuid4().hex, ticket_id=None, telegram_user_id=7, text="VPN is down",
        update_id=1, received_at=datetime.now(UTC), **where()), producer="telegram")


EVENTS = {"support reply": (support_reply, ("SUPPORT", "Try the other server")),
          "user message": (user_message, ("USER", "VPN is down"))}
NAMES = list(EVENTS)


def ref(env: Envelope) -> str:
    return telegram_ref(env.payload["chat_id"], env.payload["telegram_message_id"])


async def landed(pg, env: Envelope) -> list[tuple[str, str, str]]:
    rows = await pg.fetch("SELECT author_role, origin, body FROM tickets.messages"
                          " WHERE external_ref = $1", ref(env))
    return [tuple(r) for r in rows]


@pytest.mark.parametrize("name", NAMES)
async def test_a_published_event_lands_its_message_once(db, pg, name):
    make, (author, body) = EVENTS[name]
    env = await make(db)
    async with in_memory_bus(build_subscription(db)) as bus:
        await bus.publish(env)
        assert await landed(pg, env) == [(author, "TELEGRAM", body)]
        # redelivered after its message went: the inbox has the event, nothing lands again
        await pg.execute("DELETE FROM tickets.messages WHERE external_ref = $1", ref(env))
        await bus.publish(env)
    assert await landed(pg, env) == []
    assert await pg.fetchval("SELECT count(*) FROM tickets.inbox WHERE event_id = $1",
                             env.event_id) == 1


@pytest.mark.parametrize("name", NAMES)
async def test_an_event_its_contract_refuses_is_rejected(db, pg, name):
    env = await EVENTS[name][0](db)
    body = env.model_dump(mode="json")
    del body["payload"]["chat_id"]
    rejected = MESSAGES_HANDLED.labels(QUEUE, env.routing_key, "rejected")
    before = rejected._value.get()
    async with in_memory_bus(build_subscription(db)) as bus:
        await bus.publish_raw(env.routing_key, body)
    assert rejected._value.get() == before + 1
    assert await pg.fetchval("SELECT count(*) FROM tickets.messages WHERE body = $1"
                             " AND origin = 'TELEGRAM' AND external_ref = $2",
                             EVENTS[name][1][1], ref(env)) == 0
    assert await pg.fetchval("SELECT count(*) FROM tickets.inbox WHERE event_id = $1",
                             env.event_id) == 0
