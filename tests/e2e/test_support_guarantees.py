"""Support flow guarantees: duplicates apply once, bad input changes nothing, poison goes to
the DLQ, schemas are isolated per service role."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest

from contracts import make_envelope
from contracts.telegram import SupportReplyReceivedV1
from tests.conftest import ADMIN_DSN, TEST_DB, await_for, publish_envelope, queue_depth, register
from tests.e2e.test_support_flow import SUPPORT_CHAT, get_ticket


def _reply(ticket_id: str, text: str, message_id: int) -> SupportReplyReceivedV1:
    return SupportReplyReceivedV1(
        ticket_id=ticket_id, body=text, operator_telegram_id=1001, chat_id=SUPPORT_CHAT,
        telegram_message_id=message_id, update_id=message_id, received_at=datetime.now(UTC))


async def test_same_event_twice_gives_one_message(gateway_url, emulator_url):
    customer = register(gateway_url)
    ticket = customer.post("/tickets", json={"subject": "Duplicate event",
                                             "body": "hi"}).json()["ticket"]
    env = make_envelope(_reply(ticket["id"], "Only once please", 900001), producer="telegram")
    body = env.model_dump(mode="json")
    await publish_envelope(body, env.routing_key)
    await publish_envelope(body, env.routing_key)
    # a different event about the same Telegram message is the same message too
    env2 = make_envelope(_reply(ticket["id"], "Only once please", 900001), producer="telegram")
    await publish_envelope(env2.model_dump(mode="json"), env2.routing_key)
    marker = make_envelope(_reply(ticket["id"], "marker", 900002), producer="telegram")
    await publish_envelope(marker.model_dump(mode="json"), marker.routing_key)

    async def bodies():
        t = get_ticket(customer, ticket["id"])
        found = [m["body"] for m in t["messages"] if m["author_role"] == "SUPPORT"]
        return found if "marker" in found else None

    found = await await_for(bodies, message="marker reply")
    assert found.count("Only once please") == 1


def test_webhook_secret_is_required(gateway_url, emulator_url, db_counts):
    before = db_counts()
    for secret in (None, "wrong-secret"):
        r = httpx.post(f"{emulator_url}/_emulator/updates", json={
            "chat_id": SUPPORT_CHAT, "from_id": 1001, "text": "forged", "secret_token": secret},
            timeout=15)
        assert r.status_code == 200 and r.json()["status_code"] == 401
    direct = httpx.post(f"{gateway_url}/api/v1/telegram/webhook", json={"update_id": 1},
                        headers={"X-Telegram-Bot-Api-Secret-Token": "x" * 10})
    assert direct.status_code == 401
    assert direct.json()["code"] == "UNAUTHENTICATED"
    assert db_counts() == before


@pytest.fixture
def db_counts():
    import asyncio

    async def counts():
        conn = await asyncpg.connect(ADMIN_DSN)
        try:
            return (await conn.fetchval("SELECT count(*) FROM telegram.received_updates"),
                    await conn.fetchval("SELECT count(*) FROM tickets.messages"))
        finally:
            await conn.close()

    return lambda: asyncio.run(counts())


BAD_BODIES = [b"{not json", b"[]", b'{"subject": 5, "body": "x"}', b'"string"', b"null",
              b'{"subject": "ok subject", "body": ""}', b'{"subject": "ab", "body": "x"}',
              b'{"subject": "ok subject", "body": "x", "extra": 1}']


def test_bad_input_is_a_400_and_changes_nothing(gateway_url, db_counts):
    customer = register(gateway_url)
    ticket = customer.post("/tickets", json={"subject": "Valid ticket",
                                             "body": "x"}).json()["ticket"]
    before = db_counts()
    targets = [("/tickets", BAD_BODIES), (f"/tickets/{ticket['id']}/messages",
                                          [b"{", b'{"body": 1}', b'{"body": ""}', b"[]"])]
    for path, bodies in targets:
        for raw in bodies:
            r = customer.post(path, content=raw)
            assert r.status_code == 400, (path, raw, r.status_code, r.text)
            assert r.json()["code"] == "VALIDATION_ERROR"
    for params in ({"limit": "abc"}, {"limit": 0}, {"limit": 101}, {"status": "NOPE"},
                   {"cursor": "!!!"}):
        r = customer.get("/tickets", params=params)
        assert r.status_code == 400, (params, r.text)
        assert r.json()["code"] == "VALIDATION_ERROR"
    secret_hdr = {"X-Telegram-Bot-Api-Secret-Token": "dev-telegram-webhook-secret",
                  "Content-Type": "application/json"}
    for raw in (b"{", b"[]", b'{"update_id": "x"}', b'{"update_id": true}', b"{}"):
        r = httpx.post(f"{gateway_url}/api/v1/telegram/webhook", content=raw, headers=secret_hdr)
        assert r.status_code == 400, (raw, r.text)
        assert r.json()["code"] == "VALIDATION_ERROR"
    big = b'{"subject": "big", "body": "' + b"x" * 200_000 + b'"}'
    huge = customer.post("/tickets", content=big)
    assert huge.status_code == 413 and huge.json()["code"] == "PAYLOAD_TOO_LARGE"
    assert db_counts() == before


def test_other_users_ticket_is_not_found(gateway_url):
    owner = register(gateway_url)
    other = register(gateway_url)
    ticket = owner.post("/tickets", json={"subject": "Mine only", "body": "x"}).json()["ticket"]
    assert other.get(f"/tickets/{ticket['id']}").status_code == 404
    assert other.post(f"/tickets/{ticket['id']}/messages", json={"body": "hi"}).status_code == 404
    assert other.post(f"/tickets/{ticket['id']}/close").status_code == 404
    assert all(t["id"] != ticket["id"] for t in other.get("/tickets").json()["tickets"])
    assert get_ticket(owner, ticket["id"])["status"] == "OPEN"


async def test_poison_message_is_dead_lettered_and_others_flow(gateway_url, emulator_url):
    customer = register(gateway_url)
    ticket = customer.post("/tickets", json={"subject": "After poison",
                                             "body": "x"}).json()["ticket"]
    dlq = "tickets.telegram-events.dlq"
    before = await queue_depth(dlq)
    poison = make_envelope(_reply(uuid.uuid4().hex, "for a ticket that does not exist", 900100),
                           producer="telegram")
    await publish_envelope(poison.model_dump(mode="json"), poison.routing_key)
    good = make_envelope(_reply(ticket["id"], "still flowing", 900101), producer="telegram")
    await publish_envelope(good.model_dump(mode="json"), good.routing_key)

    async def flowed():
        t = get_ticket(customer, ticket["id"])
        return any(m["body"] == "still flowing" for m in t["messages"])

    await await_for(flowed, message="good message processed")

    async def dead_lettered():
        return await queue_depth(dlq) == before + 1

    await await_for(dead_lettered, timeout=30, message="poison message in the DLQ")


@pytest.mark.parametrize("role,foreign", [("telegram_svc", "tickets.tickets"),
                                          ("tickets_svc", "telegram.received_updates"),
                                          ("gateway_svc", "tickets.messages"),
                                          ("tickets_svc", "identity.users")])
async def test_service_role_cannot_read_another_schema(stack, role, foreign):
    conn = await asyncpg.connect(f"postgresql://{role}@127.0.0.1:5432/{TEST_DB}")
    try:
        with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
            await conn.fetch(f"SELECT * FROM {foreign} LIMIT 1")
        own = {"telegram_svc": "telegram.outgoing", "tickets_svc": "tickets.tickets",
               "gateway_svc": "identity.users"}[role]
        await conn.fetch(f"SELECT * FROM {own} LIMIT 1")
    finally:
        await conn.close()
