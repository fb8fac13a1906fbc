"""The shop in the bot through the whole system, as a Telegram user drives it in the emulator:
the menu, the trial, a purchase with a typed promo code on the sandbox chain (a double tap
makes one invoice; the invoice message's status line follows the payment), the access message
with its QR, and an expired invoice's button answering clearly."""

from __future__ import annotations

import hashlib
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx

from telegram.shop import qr_png
from tests.conftest import register, sql, wait_for
from tests.e2e.test_promo import create_code
from tests.e2e.test_telegram_notifications import link_telegram, say


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


def photo_digests(emulator_url: str, chat: int) -> list[str]:
    r = httpx.get(f"{emulator_url}/_emulator/calls", params={"method": "sendPhoto",
                                                            "chat_id": chat}, timeout=15)
    return [c["params"]["photo"]["sha256"] for c in r.json()["calls"]]


def test_trial_then_a_promo_purchase_with_a_double_tap_and_access_with_qr(
        gateway_url, emulator_url, admin_client):
    plan = admin_client.post("/admin/plans", json={
        "name": f"Bot plan {uuid.uuid4().hex[:6]}", "price_usd": "8.00", "duration_days": 30,
        "max_devices": 2}).json()["plan"]
    code = create_code(admin_client)  # 25 % off
    client = register(gateway_url)
    user_id = client.get("/auth/me").json()["user"]["id"]
    chat = link_telegram(client, emulator_url)

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
