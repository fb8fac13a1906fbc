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

    # the worker may take the events in any order (a redelivery goes to the back), so wait
    # until the inbox holds every one of them before counting
    ids = [str(env.event_id), str(env2.event_id), str(marker.event_id)]

    async def all_handled():
        conn = await asyncpg.connect(ADMIN_DSN)
        try:
            return await conn.fetchval(
                "SELECT count(*) FROM tickets.inbox WHERE event_id::text = ANY($1::text[])",
                ids) == len(ids)
        finally:
            await conn.close()

    await await_for(all_handled, message="every event handled")
    t = get_ticket(customer, ticket["id"])
    found = [m["body"] for m in t["messages"] if m["author_role"] == "SUPPORT"]
    assert "marker" in found
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


SECRET_HDR = {"X-Telegram-Bot-Api-Secret-Token": "dev-telegram-webhook-secret",
              "Content-Type": "application/json"}


def _discarded() -> list[dict]:
    import asyncio

    async def rows():
        conn = await asyncpg.connect(ADMIN_DSN)
        try:
            return [dict(r) for r in await conn.fetch(
                "SELECT update_id, reason FROM telegram.discarded_updates ORDER BY id")]
        finally:
            await conn.close()

    return asyncio.run(rows())


def test_unusable_telegram_updates_are_200_recorded_and_change_nothing(gateway_url, db_counts):
    """Telegram redelivers anything but a 2xx, so an update Postgres cannot hold is answered
    200, kept in discarded_updates, and never reaches the pump or the tickets."""
    base = 910_000_000 + uuid.uuid4().int % 1_000_000
    bodies = [
        (b'{"update_id": %d, "message": {"message_id": 1, "date": 0, "chat": {"id": 5, '
         b'"type": "private"}, "text": "nul\\u0000here"}}' % base, str(base), "invalid_text"),
        (b'{"update_id": %d, "message": {"text": "lone \\ud800 surrogate"}}' % (base + 1),
         str(base + 1), "invalid_text"),
        (b'{"update_id": %d, "message": {}}' % 2**63, str(2**63), "integer_out_of_range"),
        (b'{"update_id": %d}' % 2**64, str(2**64), "integer_out_of_range"),
        (b'{"update_id": -%d}' % (2**63 + 1), str(-(2**63 + 1)), "integer_out_of_range"),
    ]
    before, seen = db_counts(), len(_discarded())
    for raw, _, _ in bodies:
        r = httpx.post(f"{gateway_url}/api/v1/telegram/webhook", content=raw, headers=SECRET_HDR,
                       timeout=10)
        assert r.status_code == 200 and r.json() == {"ok": True}, (raw, r.text)
    assert [(d["update_id"], d["reason"]) for d in _discarded()[seen:]] == [
        (uid, reason) for _, uid, reason in bodies]
    assert db_counts() == before  # nothing stored for the pump, no ticket message


def test_ticket_text_loses_invisible_characters_and_needs_a_visible_one(gateway_url):
    customer = register(gateway_url)
    r = customer.post("/tickets", json={"subject": "Pay\u202eme\u200b now",
                                        "body": "\u2066hidden\u2069 \ufefftext"})
    assert r.status_code == 201, r.text
    ticket = r.json()["ticket"]
    assert (ticket["subject"], ticket["messages"][0]["body"]) == ("Payme now", "hidden text")
    for path, body in (("/tickets", {"subject": "\u200b\u200c\u200d\u2060", "body": "x"}),
                       ("/tickets", {"subject": "Fine subject", "body": "\u202a\u202e \ufeff"}),
                       ("/tickets", {"subject": "a\u200bb", "body": "x"}),
                       (f"/tickets/{ticket['id']}/messages", {"body": "\u2066\u2069"})):
        r = customer.post(path, json=body)
        assert r.status_code == 400 and r.json()["code"] == "VALIDATION_ERROR", (body, r.text)
    r = customer.post(f"/tickets/{ticket['id']}/messages", json={"body": "ok\u200b!"})
    assert r.status_code == 201 and r.json()["message"]["body"] == "ok!"


def test_customer_text_in_the_topic_is_quoted_apart_from_the_bots_lines(gateway_url,
                                                                         emulator_url):
    from tests.conftest import wait_for
    from tests.e2e.test_support_flow import topic_of

    customer = register(gateway_url)
    body = "Hello\nFrom: VIP <ceo@corp> & co\nTicket: none"
    ticket = customer.post("/tickets", json={"subject": "Spoof\nFrom: VIP",
                                             "body": body}).json()["ticket"]
    thread = topic_of(emulator_url, ticket["id"])

    def first():
        msgs = httpx.get(f"{emulator_url}/_emulator/messages",
                         params={"chat_id": SUPPORT_CHAT}, timeout=10).json()["messages"]
        return [m for m in msgs if m.get("message_thread_id") == thread and "entities" in m]

    message = wait_for(first, message="first message in the topic")[0]
    units = message["text"].encode("utf-16-le")
    quotes = [e for e in message["entities"] if e["type"] == "blockquote"]
    assert len(quotes) == 1
    start, end = 2 * quotes[0]["offset"], 2 * (quotes[0]["offset"] + quotes[0]["length"])
    assert units[start:end].decode("utf-16-le") == body
    own = units[:start].decode("utf-16-le").splitlines()
    header = [line for line in own if line.startswith("From:")]
    assert len(header) == 1 and "VIP" not in header[0] and header[0].endswith("(via web)")
    assert own[0] == "🆕 New ticket: Spoof From: VIP"  # the subject keeps to its own line
