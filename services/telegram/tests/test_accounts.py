"""Accounts from Telegram (`telegram.accounts`), against the Telegram emulator over real HTTP:
`/start` makes an account for a Telegram user who has none (with the referral code of
`/start ref_<code>`), `/start pay_<invoice>` shows only the customer's own invoice (billing is
a stand-in that checks the signed identity), `/login` gives a one-time, hashed, rate-limited
sign-in link the gateway redeems once, and the gateway's password-reset link reaches the
linked chat without being stored."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI, HTTPException, Request

from runtime import identity
from runtime.clock import now
from runtime.testing import free_port, serve_in_thread
from telegram.accounts import LOGINS_PER_HOUR
from telegram.app import create_api
from telegram.models import AccountLink, BotUser, LoginToken, Outgoing
from telegram.service import UpdateService
from telegram.texts import t

from .conftest import make_settings
from .helpers import Bot, link, next_forum, next_id, private_message, published

CREATED = "telegram.account.created.v1"


@pytest.fixture
async def bot(db, emulator):
    b = Bot(db, emulator, next_forum())
    yield b
    await b.close()


async def link_of_telegram(db, tg_user: int) -> AccountLink | None:
    async with db.transaction() as s:
        return (await s.execute(sa.select(AccountLink).where(
            AccountLink.telegram_user_id == tg_user))).scalar_one_or_none()


async def created_for(db, tg_user: int) -> list[dict]:
    return [p for p in await published(db, CREATED) if p["telegram_user_id"] == tg_user]


# --- /start ------------------------------------------------------------------------------

async def test_start_makes_an_account_for_a_telegram_user_who_has_none_once(db, bot):
    tg_user = next_id()
    message = private_message(tg_user, "/start")
    message["from"]["language_code"] = "ru"
    # in the language the customer's app reports
    assert await bot.answer(message) == ("account_created", [t("ru", "acct_welcome")])
    made = await link_of_telegram(db, tg_user)
    assert (made.chat_id, made.telegram_username) == (tg_user, "ann")
    [event] = await created_for(db, tg_user)
    assert (event["user_id"], event["telegram_username"], event["first_name"],
            event["language_code"], event["referral_code"]) == (made.user_id, "ann", "Ann",
                                                                 "ru", None)
    # a second /start is the linked customer's: no second account
    outcome, _ = await bot.answer(private_message(tg_user, "/start"))
    assert outcome != "account_created"
    assert len(await created_for(db, tg_user)) == 1


async def test_start_with_a_referral_code_records_the_referrer(db, bot):
    tg_user = next_id()
    outcome, texts = await bot.answer(private_message(tg_user, "/start ref_AbC23xyz"))
    assert (outcome, texts) == ("account_created:referral",
                                [f"{t('en', 'acct_invited')}\n\n{t('en', 'acct_welcome')}"])
    [event] = await created_for(db, tg_user)
    assert event["referral_code"] == "abc23xyz"
    # a code that cannot be one never stops the account
    other = next_id()
    assert (await bot.answer(private_message(other, "/start ref_")))[0] == "account_created"
    assert [e["referral_code"] for e in await created_for(db, other)] == [None]
    # someone with an account already is not referred
    _, linked = await link(db)
    assert await bot.answer(private_message(linked, "/start ref_abc23xyz")) == (
        "referral_linked", [t("en", "acct_referral_linked")])
    assert await created_for(db, linked) == []


async def test_a_web_customers_link_token_still_links_their_account(db, bot):
    from telegram.service import create_link_token
    user_id, tg_user = uuid.uuid4().hex, next_id()
    async with db.transaction() as s:
        url, _ = await create_link_token(s, user_id, "vpn_support_bot")
    outcome, _ = await bot.answer(private_message(tg_user, f"/start {url.rsplit('=', 1)[1]}"))
    assert outcome == "linked"
    assert (await link_of_telegram(db, tg_user)).user_id == user_id
    assert await created_for(db, tg_user) == []


# --- /start pay_<invoice> ------------------------------------------------------------------

INVOICE = {"id": "inv-1", "status": "PENDING", "kind": "PLAN", "plan_id": "p1",
           "amount_usd": "4.99", "asset": "USDT", "network": "TRON", "amount_asset": "4.99",
           "address": "TAddr1", "payment_url": None, "amount_stars": None}


def fake_billing(key: str, owner: dict) -> FastAPI:
    """Billing's invoice read: the invoice for its owner, 404 for anyone else; the plans."""
    app = FastAPI()

    @app.get("/internal/plans")
    async def plans() -> dict:
        return {"plans": [{"id": "p1", "name": "Basic month"}]}

    @app.get("/internal/invoices/{invoice_id}")
    async def invoice(invoice_id: str, request: Request) -> dict:
        who = identity.verify(key, request.headers.get(identity.HEADER), audience="billing")
        if invoice_id != INVOICE["id"] or who.user_id != owner.get("user_id"):
            raise HTTPException(404)
        return {"invoice": INVOICE}

    return app


@pytest.fixture(scope="module")
def billing() -> Iterator[tuple[dict, str]]:
    owner: dict = {}
    port = free_port()
    with serve_in_thread(fake_billing(make_settings().internal_signing_key, owner), port):
        yield owner, f"http://127.0.0.1:{port}"


async def test_a_pay_link_opens_the_customers_own_invoice_only(db, bot, billing):
    owner, url = billing
    bot.updates = UpdateService(bot.settings.model_copy(update={"billing_url": url}))
    user_id, tg_user = await link(db)
    owner["user_id"] = user_id
    outcome, [text] = await bot.answer(private_message(tg_user, "/start pay_inv-1"))
    assert outcome == "invoice"  # as the shop shows an invoice, named by its plan
    assert text.splitlines()[:3] == ["🧾 Invoice inv-1", "Basic month",
                                     "Amount: 4.99 USDT ($4.99)"]
    assert "Address (TRON): TAddr1" in text
    assert text.endswith("Status: 👀 payment detected, waiting for confirmations")
    [shown] = [m for m in await bot.shown(tg_user) if m["text"] == text]
    assert shown["reply_markup"]["inline_keyboard"] == [[{"text": t("en", "btn_menu"),
                                                          "callback_data": "m"}]]
    _, someone_else = await link(db)
    assert await bot.answer(private_message(someone_else, "/start pay_inv-1")) == (
        "invoice_unknown", [t("en", "acct_invoice_unknown")])
    assert await bot.answer(private_message(next_id(), "/start pay_inv-1")) == (
        "invoice_unlinked", [t("en", "acct_pay_unlinked")])
    # a customer who chose Russian in the menu gets Russian
    async with db.transaction() as s:
        s.add(BotUser(telegram_user_id=someone_else, chat_id=someone_else, language="ru"))
    assert await bot.answer(private_message(someone_else, "/start pay_inv-1")) == (
        "invoice_unknown", [t("ru", "acct_invoice_unknown")])


# --- /login and its redemption by the gateway ------------------------------------------------

@pytest.fixture(scope="module")
def api(migrated, emulator) -> Iterator[tuple[str, object]]:
    settings = make_settings().model_copy(update={"api_base": emulator})
    port = free_port()
    with serve_in_thread(create_api(settings), port):
        yield f"http://127.0.0.1:{port}", settings


def as_gateway(settings, role: str = "SERVICE") -> dict[str, str]:
    return {identity.HEADER: identity.sign(settings.internal_signing_key, "gateway", role,
                                           audience="telegram")}


async def test_login_gives_a_one_time_link_kept_only_as_a_hash(db, bot, api):
    base, settings = api
    user_id, tg_user = await link(db)
    outcome, [text] = await bot.answer(private_message(tg_user, "/login"))
    assert outcome == "login_link"
    token = re.search(r"/api/v1/auth/telegram-login\?token=([A-Za-z0-9_-]+)$", text).group(1)
    async with db.transaction() as s:
        row = (await s.execute(sa.select(LoginToken).where(
            LoginToken.telegram_user_id == tg_user))).scalar_one()
        sent = (await s.execute(sa.select(Outgoing).where(Outgoing.kind == "login_link",
                                                          Outgoing.chat_id == tg_user))
                ).scalar_one()
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert timedelta(minutes=9) < row.expires_at - now() <= timedelta(minutes=10)
    assert (sent.status, sent.text) == ("SENT", None)  # the link is not kept once delivered
    async with httpx.AsyncClient(base_url=base) as c:
        refused = await c.post("/internal/login-tokens/redeem", json={"token": token},
                               headers=as_gateway(settings, role="USER"))
        assert refused.status_code == 403  # a customer's identity cannot redeem
        first = await c.post("/internal/login-tokens/redeem", json={"token": token},
                             headers=as_gateway(settings))
        assert first.status_code == 200
        assert first.json() == {"user_id": user_id, "telegram_user_id": tg_user,
                                "telegram_username": "ann"}
        again = await c.post("/internal/login-tokens/redeem", json={"token": token},
                             headers=as_gateway(settings))
        assert (again.status_code, again.json()["code"]) == (401, "UNAUTHENTICATED")


async def test_an_expired_login_link_signs_in_nobody(db, bot, api, pg):
    base, settings = api
    _, tg_user = await link(db)
    _, [text] = await bot.answer(private_message(tg_user, "/login"))
    token = text.rsplit("token=", 1)[1]
    await pg.execute("UPDATE telegram.login_tokens SET expires_at = now() - interval '1 second'"
                     " WHERE telegram_user_id = $1", tg_user)
    async with httpx.AsyncClient(base_url=base) as c:
        r = await c.post("/internal/login-tokens/redeem", json={"token": token},
                         headers=as_gateway(settings))
    assert r.status_code == 401


async def test_login_links_are_limited_and_need_an_account(db, bot):
    assert await bot.answer(private_message(next_id(), "/login")) == (
        "login_no_account", [t("en", "acct_no_account")])
    _, tg_user = await link(db)
    for _ in range(LOGINS_PER_HOUR):
        assert (await bot.handle(private_message(tg_user, "/login")))[0] == "login_link"
    # the links not yet delivered go out first, in order; the refusal last
    outcome, texts = await bot.answer(private_message(tg_user, "/login"))
    assert outcome == "login_rate_limited"
    assert len(texts) == LOGINS_PER_HOUR + 1 and texts[-1] == t("en", "acct_login_limit")


async def test_the_gateway_finds_a_telegram_users_account(db, api):
    base, settings = api
    user_id, tg_user = await link(db)
    async with httpx.AsyncClient(base_url=base) as c:
        found = await c.get(f"/internal/accounts/by-telegram/{tg_user}",
                            headers=as_gateway(settings))
        missing = await c.get(f"/internal/accounts/by-telegram/{next_id()}",
                              headers=as_gateway(settings))
    assert found.json()["user_id"] == user_id
    assert missing.status_code == 404


async def test_a_password_reset_link_reaches_the_linked_chat(db, bot, api):
    base, settings = api
    user_id, tg_user = await link(db)
    url = "http://127.0.0.1:8000/reset-password?token=secret-token"
    async with httpx.AsyncClient(base_url=base) as c:
        r = await c.post("/internal/password-reset-notices", headers=as_gateway(settings),
                         json={"user_id": user_id, "url": url, "minutes": 30})
        unlinked = await c.post("/internal/password-reset-notices", headers=as_gateway(settings),
                                json={"user_id": uuid.uuid4().hex, "url": url, "minutes": 30})
    assert r.status_code == 202 and unlinked.status_code == 404
    [shown] = await bot.shown(tg_user)
    assert url in shown["text"] and "works once, for 30 minutes" in shown["text"]
    async with db.transaction() as s:  # sent at once, never stored
        stored = await s.scalar(sa.select(sa.func.count()).select_from(Outgoing).where(
            Outgoing.text.contains("secret-token")))
    assert stored == 0


# --- the rest of the private chat, in the customer's language ----------------------------------

async def test_a_russian_speaking_customer_is_answered_in_russian(db, bot):
    user_id, tg_user = await link(db)
    message = private_message(tg_user, "/status")
    message["from"]["language_code"] = "ru"
    assert await bot.answer(message) == ("status", [t("ru", "status_text_none")])
    message = private_message(tg_user, "Не работает ключ")
    message["from"]["language_code"] = "ru-RU"
    assert await bot.answer(message) == ("user_message", [t("ru", "message_taken")])
    # the language chosen in the menu wins over the app's
    async with db.transaction() as s:
        (await s.get(BotUser, tg_user)).language = "en"
    message = private_message(tg_user, "/help")
    message["from"]["language_code"] = "ru"
    assert await bot.answer(message) == ("help", [t("en", "help")])
    stranger = private_message(next_id(), "hello")
    stranger["from"]["language_code"] = "uk"
    assert await bot.answer(stranger) == ("unlinked", [t("ru", "unlinked_chat")])


# --- linking a web account after /start made one --------------------------------------------

async def test_a_web_account_takes_the_telegram_from_the_unused_account_start_made(db, bot):
    from telegram.models import CustomerFacts, SubscriptionView
    from telegram.service import create_link_token

    tg_user = next_id()
    assert (await bot.answer(private_message(tg_user, "/start")))[0] == "account_created"
    made = await link_of_telegram(db, tg_user)
    web_user = uuid.uuid4().hex
    async with db.transaction() as s:
        url, _ = await create_link_token(s, web_user, "vpn_support_bot")
    outcome, texts = await bot.answer(private_message(tg_user, f"/start {url.rsplit('=', 1)[1]}"))
    assert (outcome, texts) == ("linked", [t("en", "linked")])
    assert (await link_of_telegram(db, tg_user)).user_id == web_user
    linked = [p for p in await published(db, "telegram.account.linked.v1")
              if p["telegram_user_id"] == tg_user]
    assert [p["user_id"] for p in linked] == [web_user]

    # an account with something on it keeps its Telegram: a subscription, or a trial
    for history in (SubscriptionView(user_id="", status="ACTIVE"),
                    CustomerFacts(user_id="", trial_at=now())):
        tg_user = next_id()
        await bot.answer(private_message(tg_user, "/start"))
        made = await link_of_telegram(db, tg_user)
        history.user_id = made.user_id
        async with db.transaction() as s:
            s.add(history)
        async with db.transaction() as s:
            url, _ = await create_link_token(s, uuid.uuid4().hex, "vpn_support_bot")
        assert await bot.answer(private_message(tg_user, f"/start {url.rsplit('=', 1)[1]}")) == (
            "link_refused", [t("en", "link_taken")])
        assert (await link_of_telegram(db, tg_user)).user_id == made.user_id
