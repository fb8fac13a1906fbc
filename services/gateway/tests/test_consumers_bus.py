"""The gateway's consumer on FastStream's in-memory broker (the worker's subscriber, filters and
`Delivery` middleware, no RabbitMQ): an account link is applied once per event, and a link its
contract refuses is rejected before the handler."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway_tests_factories import add_user

from contracts import make_envelope
from contracts.telegram import AccountLinkedV1
from gateway.consumers import QUEUE, build_subscription
from runtime.metrics import MESSAGES_HANDLED
from runtime.testing import in_memory_bus

KEY = AccountLinkedV1.routing_key()


def linked(user_id: str):
    return make_envelope(AccountLinkedV1(user_id=user_id, telegram_user_id=42,
                                         telegram_username="ann", linked_at=datetime.now(UTC)),
                         producer="telegram")


async def user(pg, uid: str):
    return await pg.fetchrow("SELECT telegram_linked, telegram_username FROM identity.users"
                             " WHERE id = $1", uid)


async def test_a_published_link_is_applied_once(db, pg):
    uid = await add_user(db)
    env = linked(uid)
    async with in_memory_bus(build_subscription(db)) as bus:
        await bus.publish(env)
        assert tuple(await user(pg, uid)) == (True, "ann")
        await pg.execute("UPDATE identity.users SET telegram_username = 'later' WHERE id = $1",
                         uid)
        await bus.publish(env)  # redelivered: the inbox has it, nothing is applied again
    assert (await user(pg, uid))["telegram_username"] == "later"
    assert await pg.fetchval("SELECT count(*) FROM identity.inbox WHERE event_id = $1",
                             env.event_id) == 1


async def test_a_link_its_contract_refuses_is_rejected(db, pg):
    uid = await add_user(db)
    body = linked(uid).model_dump(mode="json")
    body["payload"]["telegram_user_id"] = "not a number"
    rejected = MESSAGES_HANDLED.labels(QUEUE, KEY, "rejected")
    before = rejected._value.get()
    async with in_memory_bus(build_subscription(db)) as bus:
        await bus.publish_raw(KEY, body)
    assert rejected._value.get() == before + 1
    assert tuple(await user(pg, uid)) == (False, None)
    assert await pg.fetchval("SELECT count(*) FROM identity.inbox WHERE event_id = $1::uuid",
                             body["event_id"]) == 0
