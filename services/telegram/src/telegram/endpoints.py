"""Internal HTTP API of the telegram service: the webhook receiver and account-link tokens."""

from __future__ import annotations

import hmac

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel

from runtime.deps import Ident
from runtime.errors import Unauthenticated, ValidationFailed
from telegram.repository import TelegramRepository, UpdateInbox
from telegram.service import create_link_token

router = APIRouter(prefix="/internal")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


@router.post("/webhook")
async def webhook(request: Request, _: Ident):
    """Check the secret, store the update once, answer at once (processing comes after)."""
    settings = request.app.state.settings
    given = request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode(), settings.webhook_secret.encode()):
        request.app.state.webhook_auth_failures.inc()
        raise Unauthenticated("Invalid webhook secret")
    try:
        update = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise ValidationFailed("Malformed JSON") from exc
    update_id = update.get("update_id") if isinstance(update, dict) else None
    if not isinstance(update_id, int) or isinstance(update_id, bool):
        raise ValidationFailed("update_id must be an integer", {"field": "update_id"})
    # Stored once; the worker's update pump is woken by the insert and processes it.
    await UpdateInbox(request.app.state.db).insert(update_id, orjson.dumps(update).decode())
    return {"ok": True}


class LinkOut(BaseModel):
    url: str
    expires_at: str


@router.post("/link-tokens", status_code=201, response_model=LinkOut)
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
