"""`POST /telegram/webhook`: forwarded as-is to the telegram service, which checks the secret."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request

from gateway.schemas import ErrorOut, WebhookAck

router = APIRouter(tags=["telegram"])


UPDATE_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {
            "type": "object", "required": ["update_id"],
            "properties": {"update_id": {"type": "integer"}, "message": {"type": "object"}},
        }}},
    }
}


@router.post("/telegram/webhook", response_model=WebhookAck, openapi_extra=UPDATE_BODY,
             responses={401: {"model": ErrorOut}, 400: {"model": ErrorOut}})
async def telegram_webhook(
    request: Request,
    x_telegram_bot_api_secret_token: Annotated[str | None, Header()] = None,
):
    headers = {"Content-Type": "application/json"}
    if x_telegram_bot_api_secret_token is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = x_telegram_bot_api_secret_token
    return await request.app.state.upstreams["telegram"].relay(
        "POST", "/internal/webhook", content=await request.body(), headers=headers,
        user_id="telegram", role="SERVICE")
