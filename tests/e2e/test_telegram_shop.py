"""The shop in the bot through the whole system, as a Telegram user drives it in the emulator:
a brand-new Telegram user's account made by /start (signed in on the web from /login), the
menu, the trial, a purchase with a typed promo code on the sandbox chain (a double tap makes one
invoice; the invoice message's status line follows the payment), the access message with its
QR, a renewal paid from the balance, and an expired invoice's button answering clearly."""

from __future__ import annotations

import hashlib
import re
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx

from telegram.shop import qr_png
from tests.conftest import register, sql, wait_for
from tests.e2e.test_promo import create_code
from tests.e2e.test_telegram_notifications import bot_texts, link_telegram, say


def shown(emulator_url: str, chat: int) -> dict[int, dict]:
    r = httpx.get(f"{emulator_url}/_emulator/messages", params={"chat_id": chat}, timeout=15)
    return {m["message_id"]: m for m in r.json()["messages"] if m["from"]["is_bot"]}


def buttons(message: dict) -> dict[str, str]:
    return {b.get("callback_data") or b["text"]: b["text"]
            for row in message.get("reply_markup", {}).get("inline_keyboard", []) for b in row}


def press(emulator_url: str, chat: int, message_id: int, data: str) -> str:
    r = httpx.post(f"{emulator_url}/_emulator/press", json={
        "chat_id": chat, "message_id": message_id, "from_id": chat, "data": data}, timeout=15)
    assert r.status_code == 200 and r.json()["status_code"] == 200, r.text
    return r.json()["callback_query_id"]


def answer(emulator_url: str, query_id: str) -> dict:
    def answered():
        r = httpx.get(f"{emulator_url}/_emulator/callback-queries", timeout=15)
        found = [q for q in r.json()["callback_queries"] if q["id"] == query_id]
        return found[0] if found and found[0]["answered"] else None
    return wait_for(answered, message="the button press answered")


def step(emulator_url: str, chat: int, message_id: int, data: str, until: str) -> dict:
    """Press a button and wait until the pressed message shows `until`."""
    answer(emulator_url, press(emulator_url, chat, message_id, data))
    return wait_for(lambda: until in shown(emulator_url, chat)[message_id].get("text", "")
                    and shown(emulator_url, chat)[message_id], message=f"screen with {until}")


def new_telegram_customer(gateway_url: str, emulator_url: str) -> tuple[int, httpx.Client]:
    """A Telegram user with no account: /start makes one, the bot's /login link signs a web
    client in as it (to read what the API says of the account)."""
    tg_user = 700000 + uuid.uuid4().int % 100000
    say(emulator_url, tg_user, "/start")
    wait_for(lambda: any("Your account is ready" in t for t in bot_texts(emulator_url, tg_user)),
             message="the account made by /start")
    say(emulator_url, tg_user, "/login")
    url = wait_for(lambda: next((m.group(0) for t in bot_texts(emulator_url, tg_user)
                                 for m in [re.search(r"\S+/auth/telegram-login\?token=\S+", t)]
                                 if m), None), message="the sign-in link")
    client = httpx.Client(base_url=gateway_url + "/api/v1", timeout=15,
                          headers={"Content-Type": "application/json"})
    assert client.get(url).status_code == 303
    return tg_user, client


def photo_digests(emulator_url: str, chat: int) -> list[str]:
    r = httpx.get(f"{emulator_url}/_emulator/calls", params={"method": "sendPhoto",
                                                            "chat_id": chat}, timeout=15)
    return [c["params"]["photo"]["sha256"] for c in r.json()["calls"]]


def test_a_new_telegram_user_takes_the_trial_buys_with_a_promo_code_and_renews_from_balance(
        gateway_url, emulator_url, admin_client):
    plan = admin_client.post("/admin/plans", json={
        "name": f"Bot plan {uuid.uuid4().hex[:6]}", "price_usd": "8.00", "duration_days": 30,
        "max_devices": 2}).json()["plan"]
    code = create_code(admin_client)  # 25 % off
    chat, client = new_telegram_customer(gateway_url, emulator_url)
    me = client.get("/auth/me").json()["user"]
    assert me["email"] is None and me["telegram"]["id"] == chat
    user_id = me["id"]

    say(emulator_url, chat, "/menu")
    menu = wait_for(lambda: next((m for m in shown(emulator_url, chat).values()
                                  if "t" in buttons(m)), None), message="the menu")
    msg = menu["message_id"]
    step(emulator_url, chat, msg, "t", "free trial")
    subs = wait_for(lambda: [s for s in client.get("/subscriptions").json()["subscriptions"]
                             if s["status"] == "ACTIVE"], message="the trial active")
    access = client.get(f"/subscriptions/{subs[0]['id']}/access").json()
    access_url = access["subscription_url"]  # the stable link, with buttons to our import page
    step(emulator_url, chat, msg, "m", "VPN shop")
    screen = step(emulator_url, chat, msg, "a", access_url)
    happ = next(b for row in screen["reply_markup"]["inline_keyboard"] for b in row
                if b["text"] == "📲 Happ")
    assert happ["url"] == next(a["open_url"] for a in access["apps"] if a["id"] == "happ")
    wait_for(lambda: hashlib.sha256(qr_png(access_url)).hexdigest()
             in photo_digests(emulator_url, chat), message="the access QR photo")

    # buy with a typed promo code
    step(emulator_url, chat, msg, "m", "VPN shop")
    step(emulator_url, chat, msg, "b", plan["name"])
    screen = step(emulator_url, chat, msg, f"p:{plan['id']}", "How do you want to pay?")
    sandbox = next(d for d, text in buttons(screen).items()
                   if d.startswith("o:") and "sandbox" in text.lower())
    step(emulator_url, chat, msg, sandbox, "Promo code")
    step(emulator_url, chat, msg, "promo", "Type your promo code")
    say(emulator_url, chat, code["code"].lower())
    wait_for(lambda: f"Promo code {code['code']}: −$2.00 → $6.00"
             in shown(emulator_url, chat)[msg]["text"], message="the promo code applied")
    # a double tap: two presses of "Create invoice" before the bot answers either
    with ThreadPoolExecutor(2) as pool:
        taps = list(pool.map(lambda _: httpx.post(f"{emulator_url}/_emulator/press", json={
            "chat_id": chat, "message_id": msg, "from_id": chat, "data": "c"}, timeout=15),
            range(2)))
    assert [t.status_code for t in taps] == [200, 200]
    for t in taps:
        answer(emulator_url, t.json()["callback_query_id"])
    screen = wait_for(lambda: "waiting for payment" in shown(emulator_url, chat)[msg]["text"]
                      and shown(emulator_url, chat)[msg], message="the invoice message")
    invoices = sql("SELECT id, address, amount_asset, asset, network, promo_code"
                   " FROM billing.invoices WHERE user_id = $1 AND plan_id = $2",
                   user_id, plan["id"])
    assert len(invoices) == 1 and invoices[0]["promo_code"] == code["code"]
    invoice = invoices[0]
    assert invoice["address"] in screen["text"] and "($6.00)" in screen["text"]
    wait_for(lambda: hashlib.sha256(qr_png(invoice["address"])).hexdigest()
             in photo_digests(emulator_url, chat), message="the address QR photo")

    # pay on the sandbox chain: the status line follows, then the access message
    r = client.post("/sandbox/transfers", json={
        "address": invoice["address"], "amount_asset": str(invoice["amount_asset"]),
        "asset": invoice["asset"], "network": invoice["network"]})
    assert r.status_code == 201, r.text
    client.post("/sandbox/blocks", json={"count": 3})
    wait_for(lambda: "Status: ✅ paid" in shown(emulator_url, chat)[msg]["text"],
             timeout=40, message="the status line edited to paid")
    digests = wait_for(lambda: len(photo_digests(emulator_url, chat)) == 3
                       and photo_digests(emulator_url, chat), timeout=40,
                       message="the access message after the purchase")
    newest = max((s for s in client.get("/subscriptions").json()["subscriptions"]
                  if s["status"] == "ACTIVE"), key=lambda s: s["expires_at"])
    live = client.get(f"/subscriptions/{newest['id']}/access").json()["subscription_url"]
    assert digests[-1] == hashlib.sha256(qr_png(live)).hexdigest()
    assert any(m.get("text", "").startswith(f"✅ Invoice {invoice['id']} is paid")
               for m in shown(emulator_url, chat).values())

    # renew from the balance: credited by an admin, paid at once, extending the subscription
    r = admin_client.post(f"/admin/users/{user_id}/balance/adjustments",
                          json={"amount_usd": "10.00", "note": "goodwill"},
                          headers={"Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code in (200, 201), r.text
    until = newest["expires_at"]
    count = len(client.get("/subscriptions").json()["subscriptions"])
    step(emulator_url, chat, msg, "m", "VPN shop")
    step(emulator_url, chat, msg, "b", plan["name"])
    step(emulator_url, chat, msg, f"p:{plan['id']}", "How do you want to pay?")
    step(emulator_url, chat, msg, "o:bal", "Promo code")
    step(emulator_url, chat, msg, "c", "Status: ✅ paid")
    renewed = wait_for(lambda: next((s for s in client.get("/subscriptions").json()[
        "subscriptions"] if s["status"] == "ACTIVE" and s["expires_at"] > until), None),
        timeout=40, message="the subscription renewed from the balance")
    assert renewed["expires_at"] > until
    assert len(client.get("/subscriptions").json()["subscriptions"]) == count  # extended
    paid = sql("SELECT id FROM billing.invoices WHERE user_id = $1 AND plan_id = $2"
               " AND status = 'PAID'", user_id, plan["id"])
    assert len(paid) == 2
    assert client.get("/balance").json()["balance_usd"] == "2.00"  # 10.00 - 8.00, once


def test_an_expired_invoices_button_answers_clearly(gateway_url, emulator_url):
    client = register(gateway_url)
    chat = link_telegram(client, emulator_url)
    say(emulator_url, chat, "/buy")
    screen = wait_for(lambda: next((m for m in shown(emulator_url, chat).values()
                                    if any(d.startswith("p:") for d in buttons(m))), None),
                      message="the plans")
    msg, plan = screen["message_id"], next(d for d in buttons(screen) if d.startswith("p:"))
    screen = step(emulator_url, chat, msg, plan, "How do you want to pay?")
    sandbox = next(d for d, text in buttons(screen).items()
                   if d.startswith("o:") and "sandbox" in text.lower())
    step(emulator_url, chat, msg, sandbox, "Payment:")
    screen = step(emulator_url, chat, msg, "c", "waiting for payment")
    refresh = next(d for d in buttons(screen) if d.startswith("r:"))
    sql("UPDATE billing.invoices SET rate_locked_until = now() WHERE id = $1", refresh[2:])
    wait_for(lambda: client.get(f"/invoices/{refresh[2:]}").json()["invoice"]["status"]
             == "EXPIRED", message="the invoice expired")
    # the invoice message lost its button when it was edited to expired; the QR photo's
    # button is an old one, pressed after the expiry
    wait_for(lambda: "Status: ⌛ expired" in shown(emulator_url, chat)[msg]["text"],
             message="the status line edited to expired")
    qr = next(m for m in shown(emulator_url, chat).values() if "photo" in m)
    got = answer(emulator_url, press(emulator_url, chat, qr["message_id"], refresh))
    assert got["show_alert"] is True
    assert got["text"] == "This invoice has expired. Create a new one from Buy."
