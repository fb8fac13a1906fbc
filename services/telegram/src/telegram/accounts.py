"""Accounts from Telegram: what the bot does for a customer's account, and the internal calls
the gateway makes for Telegram sign-in.

- `/start` (bare or `ref_<code>`) by a Telegram user linked to no account: a new account id,
  linked here at once, and `telegram.account.created.v1`, from which the gateway (the owner of
  accounts) makes the account, with no email and no password, and announces it with the
  referral code. A web customer links their existing account with `/start <link-token>`.
- `/start pay_<invoice id>`: that invoice, read from billing as the linked account (billing
  answers 404 for another's invoice, so nobody sees an invoice that is not theirs).
- `/login`: a one-time web sign-in link (`LOGIN_TOKEN_TTL`, single use, only its SHA-256 kept,
  `LOGINS_PER_HOUR` per Telegram user). The message carrying it is sent with link previews off
  (a preview fetch would spend it) and its text is wiped once sent (`SECRET_KINDS`).
- For the gateway: redeeming a login token, the account of a Telegram user (Login Widget and
  Mini App sign-in), and the password-reset link sent to the linked chat.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.telegram import AccountCreatedV1
from runtime.clock import now
from runtime.logging import get_logger
from telegram.config import Settings
from telegram.models import AccountLink, BotUser, LoginToken
from telegram.repository import TelegramRepository
from telegram.shop import Calls, button, invoice_text, keyboard
from telegram.shopapi import ShopApi, ShopApiError
from telegram.texts import language_of, t

log = get_logger(__name__)

LOGIN_TOKEN_TTL = timedelta(minutes=10)
LOGINS_PER_HOUR = 5
REFERRAL_PREFIX = "ref_"
PAY_PREFIX = "pay_"
REFERRAL_CODE_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")
INVOICE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Outgoing kinds whose text holds a secret: wiped once the message is sent.
SECRET_KINDS = frozenset({"login_link"})

def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


Reply = Callable[..., Awaitable[list[int]]]


class Accounts:
    """The bot's account commands, called from `UpdateService` for private chats."""

    def __init__(self, settings: Settings, events, blocked_text: str, api: ShopApi):
        self.settings = settings
        self.events = events
        self.blocked_text = blocked_text
        self.api = api

    async def handle(self, s: AsyncSession, text: str, sender: dict, chat_id: int,
                     reply: Reply, update_id: int) -> tuple[str, list[int]] | None:
        """The outcome and answers of an account command, None when `text` is not one (or
        is one the rest of the bot answers, e.g. `/start` of a linked customer). Answers are
        in the customer's language (the one chosen in the menu, else their app's)."""
        repo = TelegramRepository(s)
        user = await s.get(BotUser, sender["id"])
        lang = language_of(user.language if user else None, sender.get("language_code"))
        command, _, arg = text.partition(" ")
        command, arg = command.split("@", 1)[0], arg.strip()
        if command == "/login" and not arg:
            return await self._login(s, repo, sender, reply, lang)
        if command != "/start" or " " in arg:
            return None
        link = await repo.link_for_telegram(sender["id"])
        if arg.startswith(PAY_PREFIX):
            calls = Calls(repo, f"update-{update_id}", chat_id)
            return await self._invoice(link, arg[len(PAY_PREFIX):], calls, lang)
        if arg.startswith(REFERRAL_PREFIX):
            code = arg[len(REFERRAL_PREFIX):]
            if link is not None:
                return "referral_linked", await reply(t(lang, "acct_referral_linked"))
            await self.create(s, sender, chat_id,
                              code.lower() if REFERRAL_CODE_RE.match(code) else None)
            valid = REFERRAL_CODE_RE.match(code) is not None
            welcome = t(lang, "acct_welcome")
            return ("account_created:referral" if valid else "account_created",
                    await reply(f"{t(lang, 'acct_invited')}\n\n{welcome}" if valid else welcome))
        if arg or link is not None:
            return None  # a link token, or a customer who has an account already
        await self.create(s, sender, chat_id, None)
        return "account_created", await reply(t(lang, "acct_welcome"))

    async def create(self, s: AsyncSession, sender: dict, chat_id: int,
                     referral_code: str | None) -> str:
        """A new account id linked to this Telegram user; the gateway makes the account."""
        user_id = uuid.uuid4().hex
        username = sender.get("username")
        s.add(AccountLink(user_id=user_id, telegram_user_id=sender["id"],
                          telegram_username=username, chat_id=chat_id))
        await s.flush()
        lang = sender.get("language_code")
        await self.events.add(s, AccountCreatedV1(
            user_id=user_id, telegram_user_id=sender["id"], telegram_username=username,
            first_name=(sender.get("first_name") or None) and str(sender["first_name"])[:64],
            language_code=lang[:16] if isinstance(lang, str) and lang else None,
            referral_code=referral_code, created_at=now()))
        log.info("telegram_account_created", user_id=user_id, referred=referral_code is not None)
        return user_id

    async def _login(self, s: AsyncSession, repo: TelegramRepository, sender: dict,
                     reply: Reply, lang: str) -> tuple[str, list[int]]:
        link = await repo.link_for_telegram(sender["id"])
        if link is None:
            return "login_no_account", await reply(t(lang, "acct_no_account"))
        if await repo.is_blocked(link.user_id):
            return "blocked", await reply(self.blocked_text)
        recent = (await s.execute(sa.select(sa.func.count()).select_from(LoginToken).where(
            LoginToken.telegram_user_id == sender["id"],
            LoginToken.created_at > now() - timedelta(hours=1)))).scalar_one()
        if recent >= LOGINS_PER_HOUR:
            return "login_rate_limited", await reply(t(lang, "acct_login_limit"))
        token = secrets.token_urlsafe(32)
        ts = now()
        s.add(LoginToken(token_hash=hash_token(token), user_id=link.user_id,
                         telegram_user_id=sender["id"], created_at=ts,
                         expires_at=ts + LOGIN_TOKEN_TTL))
        await s.flush()
        url = (f"{self.settings.app_base_url.rstrip('/')}/api/v1/auth/telegram-login"
               f"?token={token}")
        minutes = int(LOGIN_TOKEN_TTL.total_seconds() // 60)
        # a plain-text message: the URL goes in as it is (t escapes only &, < and >, which a
        # token_urlsafe URL does not hold)
        return "login_link", await reply(t(lang, "acct_login_link", minutes=minutes, url=url),
                                         "login_link")

    async def _invoice(self, link: AccountLink | None, invoice_id: str, calls: Calls,
                       lang: str) -> tuple[str, list[int]]:
        """`/start pay_<id>`: the invoice as the shop shows it (amount, address, status, the
        pay and check buttons), read from billing as the linked account (404 for another's)."""
        if link is None:
            await calls.send(t(lang, "acct_pay_unlinked"))
            return "invoice_unlinked", calls.ids
        invoice = None
        if INVOICE_ID_RE.match(invoice_id):
            try:
                invoice = await self.api.invoice(link.user_id, invoice_id)
            except ShopApiError as exc:
                if exc.unavailable:
                    log.warning("invoice_fetch_failed", error=exc.code)
                    await calls.send(t(lang, "acct_invoice_unavailable"))
                    return "invoice_unavailable", calls.ids
        if invoice is None:
            await calls.send(t(lang, "acct_invoice_unknown"))
            return "invoice_unknown", calls.ids
        # no "Check payment" here: that button belongs to the invoice messages the shop made
        # (telegram.shop), which it edits as the payment goes; this one is a snapshot
        pay = invoice.get("payment_url")
        rows = [[{"text": t(lang, "btn_pay"), "url": pay}]] if pay and invoice["status"] in {
            "CREATED", "PENDING"} else []
        await calls.send(invoice_text(lang, invoice, await self._title(lang, link, invoice)),
                         keyboard(*rows, [button(t(lang, "btn_menu"), "m")]))
        return "invoice", calls.ids

    async def _title(self, lang: str, link: AccountLink, invoice: dict) -> str:
        """What the invoice buys: the plan's name (its id when the plan is off sale)."""
        if invoice.get("kind") == "TOP_UP":
            return t(lang, "topup_plan", amount=f"{Decimal(invoice['amount_usd']):.2f}")
        try:
            plans = await self.api.plans(link.user_id)
        except ShopApiError:
            plans = []
        return next((p["name"] for p in plans if p["id"] == invoice.get("plan_id")),
                    str(invoice.get("plan_id") or ""))


# --- what the gateway asks -----------------------------------------------------------------

def account_out(link: AccountLink) -> dict:
    return {"user_id": link.user_id, "telegram_user_id": link.telegram_user_id,
            "telegram_username": link.telegram_username}


async def redeem_login_token(s: AsyncSession, token: str) -> AccountLink | None:
    """The account a login token signs in, spending the token; None for an unknown, spent or
    expired one (or one whose Telegram user is no longer linked to that account)."""
    row = (await s.execute(sa.select(LoginToken)
                           .where(LoginToken.token_hash == hash_token(token))
                           .with_for_update())).scalar_one_or_none()
    if row is None or row.used_at is not None or row.expires_at <= now():
        return None
    row.used_at = now()
    link = await TelegramRepository(s).link_for_user(row.user_id)
    if link is None or link.telegram_user_id != row.telegram_user_id:
        return None
    return link
