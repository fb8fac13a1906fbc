"""Internal HTTP API of the telegram service: the webhook receiver, account-link tokens, and
Telegram sign-in and password-reset messages for the gateway."""

from __future__ import annotations

import hmac
import json
import re
import time
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, BackgroundTasks, Path, Request
from pydantic import BaseModel, Field

from contracts.public.common import WebhookAck
from contracts.public.telegram import TelegramLinkOut
from runtime.deps import Ident
from runtime.errors import (
    Forbidden,
    NotFound,
    ServiceUnavailable,
    Unauthenticated,
    ValidationFailed,
)
from runtime.identity import Identity
from runtime.logging import get_logger
from telegram import accounts
from telegram.botapi import TelegramError
from telegram.repository import TelegramRepository, UpdateInbox
from telegram.service import create_link_token

log = get_logger(__name__)

router = APIRouter(prefix="/internal")

INT64 = range(-(2**63), 2**63)
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unusable(value: Any) -> str | None:
    """Why Postgres could not hold this update (None when it can): an integer outside int64
    (`integer_out_of_range`), or NUL / a lone surrogate in a key or string (`invalid_text`)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if _UNSTORABLE.search(item):
                return "invalid_text"
        elif isinstance(item, int) and not isinstance(item, bool) and item not in INT64:
            return "integer_out_of_range"
    return None


def parse(raw: bytes) -> Any:
    """The JSON body. Lone surrogates (which orjson refuses) and integers past 64 bits are
    read too, so that such an update can be discarded rather than refused."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    else:  # orjson reads integers past 64 bits as floats: reread them exactly
        if not (isinstance(value, dict) and isinstance(value.get("update_id"), float)):
            return value
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ValidationFailed("Malformed JSON") from exc


SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


@router.post("/webhook", response_model=WebhookAck)
async def webhook(request: Request, _: Ident, background: BackgroundTasks):
    """Check the secret, store the update once, answer at once (processing comes after; a
    Stars pre-checkout query is answered right after this answer, Telegram waits 10 s)."""
    received_at = time.monotonic()
    settings = request.app.state.settings
    given = request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode(), settings.webhook_secret.encode()):
        request.app.state.webhook_auth_failures.inc()
        raise Unauthenticated("Invalid webhook secret")
    update = parse(await request.body())
    update_id = update.get("update_id") if isinstance(update, dict) else None
    if not isinstance(update_id, int) or isinstance(update_id, bool):
        raise ValidationFailed("update_id must be an integer", {"field": "update_id"})
    reason = unusable(update)
    if reason is not None:
        # Answered 200: any other answer makes Telegram redeliver it for hours.
        await UpdateInbox(request.app.state.db).discard(
            str(update_id)[:40], reason, json.dumps(update, ensure_ascii=True))
        request.app.state.updates_discarded.labels(reason).inc()
        log.warning("telegram_update_discarded", reason=reason, update_id=str(update_id)[:40])
        return {"ok": True}
    # Stored once; the worker's update pump is woken by the insert and processes it.
    await UpdateInbox(request.app.state.db).insert(update_id, orjson.dumps(update).decode())
    query = update.get("pre_checkout_query")
    if isinstance(query, dict):  # a redelivery is answered again: Telegram keeps the first
        background.add_task(request.app.state.pre_checkout.answer, query, received_at)
    return {"ok": True}


@router.post("/link-tokens", status_code=201, response_model=TelegramLinkOut)
async def new_link_token(request: Request, ident: Ident):
    async with request.app.state.db.transaction() as s:
        url, expires = await create_link_token(s, ident.user_id,
                                               request.app.state.settings.bot_username)
    return {"url": url, "expires_at": expires.isoformat()}


@router.get("/links/{user_id}")
async def link_status(user_id: str, request: Request, ident: Ident):
    if ident.user_id != user_id and not ident.is_staff:
        raise Unauthenticated()
    async with request.app.state.db.transaction() as s:
        link = await TelegramRepository(s).link_for_user(user_id)
    return {"linked": link is not None, "username": link.telegram_username if link else None}


# --- Telegram sign-in and password resets, for the gateway (telegram.accounts) -------------

def _gateway_only(ident: Identity) -> None:
    if ident.role != "SERVICE":
        raise Forbidden("For the gateway only")


class LoginTokenIn(BaseModel):
    token: str = Field(min_length=1, max_length=128)


@router.post("/login-tokens/redeem")
async def redeem_login_token(body: LoginTokenIn, request: Request, ident: Ident):
    """The account a `/login` link signs in; the link is spent (401 for one that is unknown,
    spent or expired)."""
    _gateway_only(ident)
    async with request.app.state.db.transaction() as s:
        link = await accounts.redeem_login_token(s, body.token)
        if link is None:
            raise Unauthenticated("This sign-in link is invalid, used or expired")
        return accounts.account_out(link)


@router.get("/accounts/by-telegram/{telegram_user_id}")
async def account_by_telegram(telegram_user_id: Annotated[int, Path(ge=1, lt=2**63)],
                              request: Request, ident: Ident):
    """The account a Telegram user is linked to (Login Widget, Mini App); 404 when none."""
    _gateway_only(ident)
    async with request.app.state.db.transaction() as s:
        link = await TelegramRepository(s).link_for_telegram(telegram_user_id)
    if link is None:
        raise NotFound("No account is linked to this Telegram user")
    return accounts.account_out(link)


class ResetNoticeIn(BaseModel):
    user_id: str = Field(min_length=1, max_length=64)
    url: str = Field(min_length=1, max_length=1000)
    minutes: int = Field(ge=1, le=1440)


@router.post("/password-reset-notices", status_code=202)
async def password_reset_notice(body: ResetNoticeIn, request: Request, ident: Ident):
    """Send the reset link to the account's linked chat now (never stored here): 404 when the
    account has no Telegram, 503 when Telegram did not take the message."""
    _gateway_only(ident)
    async with request.app.state.db.transaction() as s:
        link = await TelegramRepository(s).link_for_user(body.user_id)
    if link is None:
        raise NotFound("No Telegram account is linked to this account")
    text = (f"🔐 A password reset was asked for your account. Set a new password here "
            f"(works once, for {body.minutes} minutes):\n{body.url}\n\n"
            "Did not ask for it? Ignore this message: your password stays as it is.")
    try:
        await request.app.state.bot.send_message(link.chat_id, text)
    except TelegramError as exc:
        log.warning("password_reset_notice_failed", error=exc.description[:200])
        raise ServiceUnavailable("Telegram did not take the message, try again") from exc
    return {"sent": True}
