"""The support desk end to end: an internal note, written in the ticket's topic (`/note`) and in
the API, is shown to staff and never reaches the customer: not their API view, not their web
ticket page, not their Telegram chat."""

from __future__ import annotations

import uuid

import httpx

from tests.conftest import register, wait_for
from tests.e2e.test_support_flow import get_ticket, messages_in_topic, operator_says, topic_of
from tests.e2e.test_telegram_notifications import bot_texts, link_telegram


def test_a_note_never_reaches_the_customer(gateway_url, emulator_url, admin_client):
    customer = register(gateway_url)
    tg_user = link_telegram(customer, emulator_url)
    r = customer.post("/tickets", json={"subject": "Refund question", "body": "Charged twice"})
    assert r.status_code == 201, r.text
    ticket_id = r.json()["ticket"]["id"]
    thread = topic_of(emulator_url, ticket_id)
    secret_bot, secret_api = f"bot-{uuid.uuid4().hex[:8]}", f"api-{uuid.uuid4().hex[:8]}"

    operator_says(emulator_url, thread, f"/note {secret_bot}")
    r = admin_client.post(f"/admin/tickets/{ticket_id}/notes", json={"body": secret_api})
    assert r.status_code == 201 and r.json()["message"]["kind"] == "NOTE", r.text
    # a normal answer after the notes: once it reached the customer, the notes had their chance
    operator_says(emulator_url, thread, "We are checking the double charge")

    def staff_sees_everything():
        t = admin_client.get(f"/admin/tickets/{ticket_id}").json()["ticket"]
        kinds = [(m["kind"], m["body"]) for m in t["messages"]]
        return t if ("NOTE", secret_bot) in kinds and ("NOTE", secret_api) in kinds \
            and any(b == "We are checking the double charge" for _, b in kinds) else None

    staff = wait_for(staff_sees_everything, message="notes and answer in the staff view")
    assert staff["first_response_at"] is not None
    wait_for(lambda: any("We are checking" in t for t in bot_texts(emulator_url, tg_user)),
             message="the answer in the customer's chat")
    topic = messages_in_topic(emulator_url, thread)
    assert any(secret_api in m for m in topic)  # the panel's note is shown to operators
    assert any(m.startswith("📝 Note saved") for m in topic)

    own = get_ticket(customer, ticket_id)
    assert [m["body"] for m in own["messages"]] == ["Charged twice",
                                                    "We are checking the double charge"]
    assert all(m["kind"] == "MESSAGE" for m in own["messages"])
    page = httpx.get(f"{gateway_url}/app/tickets/{ticket_id}", cookies=customer.cookies,
                     timeout=15)
    assert page.status_code == 200 and "We are checking the double charge" in page.text
    chat = " ".join(bot_texts(emulator_url, tg_user))
    for secret in (secret_bot, secret_api):
        assert secret not in page.text and secret not in chat
    admin_page = httpx.get(f"{gateway_url}/admin/tickets/{ticket_id}",
                           cookies=admin_client.cookies, timeout=15)
    assert secret_bot in admin_page.text and secret_api in admin_page.text

    # CSAT: once the ticket is closed, the web page asks "How did we do?"; a score lands once
    assert customer.post(f"/tickets/{ticket_id}/close").status_code == 200
    page = httpx.get(f"{gateway_url}/app/tickets/{ticket_id}", cookies=customer.cookies,
                     timeout=15)
    assert 'data-testid="csat-form"' in page.text
    r = customer.post(f"/tickets/{ticket_id}/rating", json={"score": 5, "comment": "Fast"})
    assert r.status_code == 201 and r.json()["ticket"]["rating"] == 5, r.text
    assert customer.post(f"/tickets/{ticket_id}/rating", json={"score": 1}).status_code == 409
    page = httpx.get(f"{gateway_url}/app/tickets/{ticket_id}", cookies=customer.cookies,
                     timeout=15)
    assert 'data-testid="csat-given"' in page.text and "csat-form" not in page.text
    staff = admin_client.get(f"/admin/tickets/{ticket_id}").json()["ticket"]
    assert (staff["rating"], staff["rating_comment"]) == (5, "Fast")
