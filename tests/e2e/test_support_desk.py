"""The support desk end to end: an internal note, written in the ticket's topic (`/note`) and in
the API, is shown to staff and never reaches the customer: not their API view, not their web
ticket page, not their Telegram chat; the customer card pinned in the ticket's topic is edited in
place, never posted again, when the customer pays; once the ticket is closed the bot's CSAT
buttons rate it through the tickets service, once; a photo from the bot and a PDF from the web
ticket page reach the ticket's topic and the web ticket page."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime

import httpx

from tests.conftest import register, wait_for
from tests.e2e.test_billing import create_invoice
from tests.e2e.test_support_flow import (
    SUPPORT_CHAT,
    calls,
    get_ticket,
    messages_in_topic,
    operator_says,
    topic_of,
)
from tests.e2e.test_telegram_notifications import bot_texts, link_telegram
from tests.e2e.test_telegram_shop import answer, press


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
    # and both reach the KPIs: today's row counts this rating and a first response once the
    # worker has renewed today's snapshot (every STATS_LIVE_INTERVAL_MS, a second here)
    today = datetime.now(UTC).date().isoformat()

    def todays_row():
        r = admin_client.get("/admin/kpis", params={"from": today, "to": today})
        assert r.status_code == 200, r.text
        [row] = r.json()["series"]
        return row if row["csat_ratings"] >= 1 else None

    row = wait_for(todays_row, message="today's KPIs counting the rating")
    assert 1 <= row["csat_avg"] <= 5
    assert row["median_first_response_s"] is not None


def test_the_customer_card_is_edited_in_place_when_the_customer_pays(gateway_url, emulator_url,
                                                                   admin_client):
    customer = register(gateway_url)
    email = customer.get("/auth/me").json()["user"]["email"]
    tg_user = link_telegram(customer, emulator_url)
    r = customer.post("/tickets", json={"subject": "Before I pay", "body": "Which plan?"})
    assert r.status_code == 201, r.text
    ticket_id = r.json()["ticket"]["id"]
    thread = topic_of(emulator_url, ticket_id)

    def cards() -> list[dict]:
        shown = httpx.get(f"{emulator_url}/_emulator/messages", params={"chat_id": SUPPORT_CHAT},
                          timeout=15).json()["messages"]
        return [m for m in shown if m.get("message_thread_id") == thread
                and m.get("text", "").startswith("🪪")]

    [card] = wait_for(cards, message="the customer card in the topic")
    pins = httpx.get(f"{emulator_url}/_emulator/pins", params={"chat_id": SUPPORT_CHAT},
                     timeout=15).json()["pinned"]
    assert card["message_id"] in pins

    plan = customer.get("/plans").json()["plans"][0]
    invoice = create_invoice(customer, plan["id"]).json()["invoice"]
    r = customer.post("/sandbox/transfers", json={
        "address": invoice["address"], "amount_asset": invoice["amount_asset"],
        "asset": "USDT", "network": "TRON"})
    assert r.status_code == 201, r.text
    assert customer.post("/sandbox/blocks", json={"count": 3}).status_code == 200

    def paid_on_card():
        [now] = cards()  # one card, whatever happens
        return now if "PAID" in now["text"] and "ACTIVE" in now["text"] else None

    edited = wait_for(paid_on_card, timeout=60, message="the card showing the paid invoice")
    assert edited["message_id"] == card["message_id"] and edited.get("edit_date")
    assert email in edited["text"] and plan["name"] in edited["text"]
    edits = calls(emulator_url, "editMessageText", chat_id=SUPPORT_CHAT)
    assert any(c["params"]["message_id"] == card["message_id"] for c in edits)
    assert sum(1 for t in messages_in_topic(emulator_url, thread) if t.startswith("🪪")) == 1
    # the same card in the staff view of the ticket
    card = admin_client.get(f"/admin/tickets/{ticket_id}").json()["ticket"]["customer"]
    assert card["email"] == email and card["subscription"]["status"] == "ACTIVE"
    assert card["last_invoices"][0]["status"] == "PAID" and card["open_tickets"] == 1

    # CSAT in the bot once the ticket is closed: a press rates it, a second is "already rated"
    assert customer.post(f"/tickets/{ticket_id}/close").status_code == 200

    def question():
        found = [c for c in calls(emulator_url, "sendMessage", chat_id=tg_user)
                 if c["params"]["text"].startswith("⭐ How did we do")]
        return found[0] if found else None

    asked = wait_for(question, message="the CSAT question in the bot")
    shown = httpx.get(f"{emulator_url}/_emulator/messages", params={"chat_id": tg_user},
                      timeout=15).json()["messages"]
    [message] = [m for m in shown if m.get("text", "").startswith("⭐ How did we do")]
    assert asked["params"]["reply_markup"]["inline_keyboard"][0][3]["callback_data"] == \
        f"cs:{ticket_id}:4"
    pressed = press(emulator_url, tg_user, message["message_id"], f"cs:{ticket_id}:4")
    assert answer(emulator_url, pressed)["text"] == "Thank you!"
    assert admin_client.get(f"/admin/tickets/{ticket_id}").json()["ticket"]["rating"] == 4
    r = customer.post(f"/tickets/{ticket_id}/rating", json={"score": 1})  # once, either way
    assert r.status_code == 409 and r.json()["details"]["reason"] == "already_rated", r.text


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(512)
PDF = b"%PDF-1.7\n" + b"%%EOF\n" * 40


def test_a_photo_from_the_bot_and_a_pdf_from_the_web_reach_the_topic_and_the_ticket_page(
        gateway_url, emulator_url):
    customer = register(gateway_url)
    tg_user = link_telegram(customer, emulator_url)
    r = customer.post("/tickets", json={"subject": "Error screen", "body": "See attached"})
    assert r.status_code == 201, r.text
    ticket_id = r.json()["ticket"]["id"]
    thread = topic_of(emulator_url, ticket_id)

    # the web: the reply form's file field (the page's CSRF token, as a browser sends it)
    page = httpx.get(f"{gateway_url}/app/tickets/{ticket_id}", cookies=customer.cookies,
                     timeout=15)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = httpx.post(f"{gateway_url}/app/tickets/{ticket_id}/messages", cookies=customer.cookies,
                   data={"csrf_token": csrf, "body": "The invoice"},
                   files={"file": ("invoice.pdf", PDF, "application/pdf")}, timeout=15)
    assert r.status_code == 303, r.text
    # the bot: a photo with a caption, the file fetched from Telegram by the telegram service
    photo = httpx.post(f"{emulator_url}/_emulator/files", data={"kind": "photo"},
                       files={"file": ("shot.jpg", PNG, "image/jpeg")}, timeout=15
                       ).json()["photo"]
    r = httpx.post(f"{emulator_url}/_emulator/updates", json={"update": {"message": {
        "message_id": 900000 + uuid.uuid4().int % 100000, "date": 0,
        "chat": {"id": tg_user, "type": "private"},
        "from": {"id": tg_user, "is_bot": False, "first_name": "Ann"},
        "photo": photo, "caption": "The error screen"}}}, timeout=15)
    assert r.status_code == 200 and r.json()["status_code"] == 200, r.text

    def files_in_topic():
        sent = {(c["method"], c["params"].get("message_thread_id")): c for c in calls(emulator_url)
                if c["method"] in ("sendPhoto", "sendDocument")}
        return sent if {("sendPhoto", thread), ("sendDocument", thread)} <= set(sent) else None

    sent = wait_for(files_in_topic, timeout=60, message="the photo and the PDF in the topic")
    assert sent[("sendDocument", thread)]["params"]["document"]["sha256"] == \
        hashlib.sha256(PDF).hexdigest()
    assert sent[("sendPhoto", thread)]["params"]["photo"]["sha256"] == \
        hashlib.sha256(PNG).hexdigest()

    def both_on_the_ticket():
        files = [a for m in get_ticket(customer, ticket_id)["messages"] for a in m["attachments"]]
        return files if len(files) == 2 else None

    files = wait_for(both_on_the_ticket, message="both files on the ticket")
    assert {f["content_type"] for f in files} == {"image/png", "application/pdf"}
    page = httpx.get(f"{gateway_url}/app/tickets/{ticket_id}", cookies=customer.cookies,
                     timeout=15)
    for f in files:
        assert f"/app/tickets/{ticket_id}/attachments/{f['id']}" in page.text
    pdf = next(f for f in files if f["content_type"] == "application/pdf")
    got = httpx.get(f"{gateway_url}/app/tickets/{ticket_id}/attachments/{pdf['id']}",
                    cookies=customer.cookies, timeout=15)
    assert got.content == PDF and got.headers["x-content-type-options"] == "nosniff"


def test_a_canned_reply_reaches_a_russian_speaking_customer_in_russian(gateway_url, emulator_url,
                                                                       admin_client):
    name = f"reinstall-{uuid.uuid4().hex[:6]}"
    r = admin_client.post("/admin/canned-replies", json={
        "name": name, "body_en": "Please reinstall the app.",
        "body_ru": "Пожалуйста, переустановите приложение."})
    assert r.status_code == 201, r.text
    customer = register(gateway_url)
    tg_user = link_telegram(customer, emulator_url)
    r = httpx.post(f"{emulator_url}/_emulator/updates", json={
        "chat_id": tg_user, "from_id": tg_user, "text": "Не работает VPN", "chat_type": "private",
        "language_code": "ru"}, timeout=15)
    assert r.status_code == 200, r.text
    ticket_id = wait_for(lambda: (customer.get("/tickets").json()["tickets"] or [None])[0],
                         message="the ticket from the bot")["id"]
    operator_says(emulator_url, topic_of(emulator_url, ticket_id), f"/r {name}")
    wait_for(lambda: any("Пожалуйста, переустановите приложение." in t
                         for t in bot_texts(emulator_url, tg_user)),
             message="the Russian canned reply in the customer's chat")
    own = get_ticket(customer, ticket_id)
    assert own["messages"][-1]["body"] == "Пожалуйста, переустановите приложение."
    assert not any("Please reinstall" in t for t in bot_texts(emulator_url, tg_user))
