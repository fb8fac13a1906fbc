"""Support flow end to end: web ticket → support chat topic → operator reply → ticket thread."""

from __future__ import annotations

import httpx

from tests.conftest import register, wait_for

SUPPORT_CHAT = -1001000000001
OPERATOR = 1001


def calls(emulator_url: str, method: str | None = None, **params) -> list[dict]:
    q = {"method": method} if method else {}
    out = httpx.get(f"{emulator_url}/_emulator/calls", params=q, timeout=10).json()["calls"]
    return [c for c in out if all(c["params"].get(k) == v for k, v in params.items())]


def topic_of(emulator_url: str, ticket_id: str) -> int:
    def find():
        for c in calls(emulator_url, "createForumTopic"):
            if ticket_id[:6] in c["params"]["name"]:
                return c["result"]["message_thread_id"]
        return None

    return wait_for(find, message=f"forum topic for {ticket_id}")


def messages_in_topic(emulator_url: str, thread_id: int) -> list[str]:
    return [c["params"]["text"] for c in calls(emulator_url, "sendMessage")
            if c["params"].get("message_thread_id") == thread_id]


def operator_says(emulator_url: str, thread_id: int, text: str, from_id: int = OPERATOR,
                  **extra) -> dict:
    r = httpx.post(f"{emulator_url}/_emulator/updates", json={
        "chat_id": SUPPORT_CHAT, "from_id": from_id, "text": text,
        "message_thread_id": thread_id, **extra}, timeout=15)
    assert r.status_code == 200, r.text
    return r.json()


def get_ticket(client: httpx.Client, ticket_id: str) -> dict:
    r = client.get(f"/tickets/{ticket_id}")
    assert r.status_code == 200, r.text
    return r.json()["ticket"]


def test_ticket_round_trip_through_support_chat(gateway_url, emulator_url):
    customer = register(gateway_url)
    r = customer.post("/tickets", json={"subject": "VPN does not connect",
                                        "body": "Handshake fails on my phone"})
    assert r.status_code == 201, r.text
    ticket = r.json()["ticket"]
    assert ticket["status"] == "OPEN" and ticket["source"] == "WEB"
    assert [m["author_role"] for m in ticket["messages"]] == ["USER"]

    thread = topic_of(emulator_url, ticket["id"])
    first = wait_for(lambda: messages_in_topic(emulator_url, thread), message="first message")
    assert "VPN does not connect" in first[0] and "Handshake fails on my phone" in first[0]

    delivered = operator_says(emulator_url, thread, "Please reinstall the profile")
    assert delivered["status_code"] == 200

    def answered():
        t = get_ticket(customer, ticket["id"])
        return t if any(m["author_role"] == "SUPPORT" for m in t["messages"]) else None

    t = wait_for(answered, message="support reply on the ticket")
    support = [m for m in t["messages"] if m["author_role"] == "SUPPORT"]
    assert [m["body"] for m in support] == ["Please reinstall the profile"]
    assert support[0]["origin"] == "TELEGRAM"
    assert t["status"] == "PENDING_USER"

    r = customer.post(f"/tickets/{ticket['id']}/messages", json={"body": "Still broken"})
    assert r.status_code == 201, r.text
    assert get_ticket(customer, ticket["id"])["status"] == "PENDING_SUPPORT"
    wait_for(lambda: any("Still broken" in m for m in messages_in_topic(emulator_url, thread)),
             message="customer reply in the same topic")
    # the operator's own reply is not echoed back into the chat
    assert not any("Please reinstall" in m for m in messages_in_topic(emulator_url, thread))

    r = customer.post(f"/tickets/{ticket['id']}/close")
    assert r.status_code == 200 and r.json()["ticket"]["status"] == "CLOSED"
    wait_for(lambda: calls(emulator_url, "closeForumTopic", message_thread_id=thread),
             message="topic closed")

    # a new customer message reopens the ticket and the topic
    r = customer.post(f"/tickets/{ticket['id']}/messages", json={"body": "It broke again"})
    assert r.status_code == 201
    assert get_ticket(customer, ticket["id"])["status"] == "PENDING_SUPPORT"
    wait_for(lambda: calls(emulator_url, "reopenForumTopic", message_thread_id=thread),
             message="topic reopened")
    wait_for(lambda: any("It broke again" in m for m in messages_in_topic(emulator_url, thread)),
             message="message after reopen")


def test_same_update_twice_gives_one_message(gateway_url, emulator_url):
    customer = register(gateway_url)
    ticket = customer.post("/tickets", json={"subject": "Billing question",
                                             "body": "Was I charged twice?"}).json()["ticket"]
    thread = topic_of(emulator_url, ticket["id"])
    first = operator_says(emulator_url, thread, "Checking, one moment")
    again = httpx.post(f"{emulator_url}/_emulator/updates", json={"update": first["update"]},
                       timeout=15)
    assert again.status_code == 200 and again.json()["status_code"] == 200

    def support_messages():
        ms = [m for m in get_ticket(customer, ticket["id"])["messages"]
              if m["author_role"] == "SUPPORT"]
        return ms or None

    wait_for(support_messages, message="reply")
    # a later reply arriving proves the duplicate had its chance to be processed first
    operator_says(emulator_url, thread, "Refund issued")
    wait_for(lambda: len(support_messages() or []) >= 2, message="second reply")
    bodies = [m["body"] for m in support_messages()]
    assert bodies.count("Checking, one moment") == 1
    assert bodies.count("Refund issued") == 1


def test_non_operator_in_support_chat_is_ignored(gateway_url, emulator_url, stack):
    customer = register(gateway_url)
    ticket = customer.post("/tickets", json={"subject": "Stranger danger",
                                             "body": "hello"}).json()["ticket"]
    thread = topic_of(emulator_url, ticket["id"])
    stranger = operator_says(emulator_url, thread, "I am not support", from_id=555)
    assert stranger["status_code"] == 200

    import asyncio

    import asyncpg

    from tests.conftest import ADMIN_DSN

    async def outcome():
        conn = await asyncpg.connect(ADMIN_DSN)
        try:
            return await conn.fetchval(
                "SELECT outcome FROM telegram.received_updates WHERE update_id = $1",
                stranger["update_id"])
        finally:
            await conn.close()

    result = wait_for(lambda: asyncio.run(outcome()), message="update processed")
    assert result == "ignored:not_operator"
    assert all(m["body"] != "I am not support"
               for m in get_ticket(customer, ticket["id"])["messages"])
