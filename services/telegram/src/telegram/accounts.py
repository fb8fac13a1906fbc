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
from urllib.parse import quote

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.telegram import AccountCreatedV1
from runtime import identity
from runtime.clock import now
from runtime.logging import get_logger
from telegram.config import Settings
from telegram.models import AccountLink, LoginToken
from telegram.repository import TelegramRepository

log = get_logger(__name__)

LOGIN_TOKEN_TTL = timedelta(minutes=10)
LOGINS_PER_HOUR = 5
REFERRAL_PREFIX = "ref_"
PAY_PREFIX = "pay_"
REFERRAL_CODE_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")
INVOICE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Outgoing kinds whose text holds a secret: wiped once the message is sent.
SECRET_KINDS = frozenset({"login_link"})

WELCOME_TEXT = ("✅ Your account is ready — no email needed.\n"
                "/login — a one-time link to sign in on the web site\n"
                "/status — your subscription\n/help — what I can do\n\n"
                "Already have an account on the web site? Open Settings there and press "
                "“Link Telegram” instead.")
INVITED_TEXT = "👋 You joined by invitation: your friend is rewarded when you buy your first plan."
REFERRAL_LINKED_TEXT = ("You already have an account, so this invitation is for someone new. "
                        "Share your own link from “Invite friends”.")
NO_ACCOUNT_TEXT = "You have no account yet: press /start to create one."
PAY_UNLINKED_TEXT = ("To open this invoice, link this Telegram to your account first: on the web "
                     "site open Settings and press “Link Telegram”.")
INVOICE_UNKNOWN_TEXT = "This invoice was not found in your account."
INVOICE_UNAVAILABLE_TEXT = "The invoice cannot be shown right now. Please try again in a minute."
LOGIN_LIMIT_TEXT = "You asked for several sign-in links already. Please try again in an hour."


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


Reply = Callable[..., Awaitable[list[int]]]


class Accounts:
    """The bot's account commands, called from `UpdateService` for private chats."""

    def __init__(self, settings: Settings, events, blocked_text: str):
        self.settings = settings
        self.events = events
        self.blocked_text = blocked_text

    async def handle(self, s: AsyncSession, text: str, sender: dict, chat_id: int,
                     reply: Reply) -> tuple[str, list[int]] | None:
        """The outcome and answers of an account command, None when `text` is not one (or
        is one the rest of the bot answers, e.g. `/start` of a linked customer)."""
        repo = TelegramRepository(s)
        command, _, arg = text.partition(" ")
        command, arg = command.split("@", 1)[0], arg.strip()
        if command == "/login" and not arg:
            return await self._login(s, repo, sender, reply)
        if command != "/start" or " " in arg:
            return None
        link = await repo.link_for_telegram(sender["id"])
        if arg.startswith(PAY_PREFIX):
            return await self._invoice(link, arg[len(PAY_PREFIX):], reply)
        if arg.startswith(REFERRAL_PREFIX):
            code = arg[len(REFERRAL_PREFIX):]
            if link is not None:
                return "referral_linked", await reply(REFERRAL_LINKED_TEXT)
            await self.create(s, sender, chat_id,
                              code.lower() if REFERRAL_CODE_RE.match(code) else None)
            valid = REFERRAL_CODE_RE.match(code) is not None
            return ("account_created:referral" if valid else "account_created",
                    await reply(f"{INVITED_TEXT}\n\n{WELCOME_TEXT}" if valid else WELCOME_TEXT))
        if arg or link is not None:
            return None  # a link token, or a customer who has an account already
        await self.create(s, sender, chat_id, None)
        return "account_created", await reply(WELCOME_TEXT)

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
                     reply: Reply) -> tuple[str, list[int]]:
        link = await repo.link_for_telegram(sender["id"])
        if link is None:
            return "login_no_account", await reply(NO_ACCOUNT_TEXT)
        if await repo.is_blocked(link.user_id):
            return "blocked", await reply(self.blocked_text)
        recent = (await s.execute(sa.select(sa.func.count()).select_from(LoginToken).where(
            LoginToken.telegram_user_id == sender["id"],
            LoginToken.created_at > now() - timedelta(hours=1)))).scalar_one()
        if recent >= LOGINS_PER_HOUR:
            return "login_rate_limited", await reply(LOGIN_LIMIT_TEXT)
        token = secrets.token_urlsafe(32)
        ts = now()
        s.add(LoginToken(token_hash=hash_token(token), user_id=link.user_id,
                         telegram_user_id=sender["id"], created_at=ts,
                         expires_at=ts + LOGIN_TOKEN_TTL))
        await s.flush()
        url = (f"{self.settings.app_base_url.rstrip('/')}/api/v1/auth/telegram-login"
               f"?token={token}")
        minutes = int(LOGIN_TOKEN_TTL.total_seconds() // 60)
        return "login_link", await reply(
            f"🔑 Your sign-in link for the web site (works once, for {minutes} minutes; do not "
            f"share it):\n{url}", "login_link")

    async def _invoice(self, link: AccountLink | None, invoice_id: str,
                       reply: Reply) -> tuple[str, list[int]]:
        if link is None:
            return "invoice_unlinked", await reply(PAY_UNLINKED_TEXT)
        if not INVOICE_ID_RE.match(invoice_id):
            return "invoice_unknown", await reply(INVOICE_UNKNOWN_TEXT)
        try:
            invoice = await fetch_invoice(self.settings, link.user_id, invoice_id)
        except httpx.HTTPError as exc:
            log.warning("invoice_fetch_failed", error=type(exc).__name__)
            return "invoice_unavailable", await reply(INVOICE_UNAVAILABLE_TEXT)
        if invoice is None:
            return "invoice_unknown", await reply(INVOICE_UNKNOWN_TEXT)
        return "invoice", await reply(invoice_text(invoice, self.settings.app_base_url))


async def fetch_invoice(settings: Settings, user_id: str, invoice_id: str) -> dict | None:
    """The invoice as billing shows it to `user_id`; None when it is not theirs (404)."""
    header = identity.sign(settings.internal_signing_key, user_id, "USER", audience="billing")
    async with httpx.AsyncClient(base_url=settings.billing_url.rstrip("/"), timeout=5) as c:
        r = await c.get(f"/internal/invoices/{quote(invoice_id, safe='')}",
                        headers={identity.HEADER: header})
    if r.status_code == 404:
        return None
    r.raise_for_status()
    return r.json()["invoice"]


STATUS_LINES = {"CREATED": "⏳ waiting for payment", "PENDING": "🔎 payment seen, confirming",
                "PAID": "✅ paid", "EXPIRED": "⌛ expired", "CANCELED": "✖️ canceled",
                "REFUNDED": "↩️ refunded"}


def invoice_text(invoice: dict, app_base_url: str) -> str:
    """An invoice as a message: what it is for, the amount, where to pay, its status."""
    what = "Top-up" if invoice.get("kind") == "TOP_UP" else f"Plan {invoice.get('plan_id')}"
    lines = [f"🧾 Invoice {invoice['id']}", f"{what}: {Decimal(invoice['amount_usd']):.2f} USD",
             f"Status: {STATUS_LINES.get(invoice['status'], invoice['status'].lower())}"]
    if invoice["status"] in ("CREATED", "PENDING"):
        if invoice.get("amount_stars"):
            lines.append(f"Pay {invoice['amount_stars']} ⭐ Telegram Stars")
        else:
            lines.append(f"Pay {invoice['amount_asset']} {invoice['asset']} "
                         f"({invoice['network']})")
        if invoice.get("address"):
            lines.append(f"Address: {invoice['address']}")
        if invoice.get("payment_url"):
            lines.append(f"Pay here: {invoice['payment_url']}")
    lines.append(f"In the panel: {app_base_url.rstrip('/')}/app/invoices/{invoice['id']}")
    return "\n".join(lines)


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
