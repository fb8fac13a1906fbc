"""`POST /telegram/webhook`: forwarded as-is to the telegram service, which checks the secret."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request

from contracts.public.common import ErrorOut, WebhookAck
from gateway.api.deps import Clients

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
    request: Request, clients: Clients,
    x_telegram_bot_api_secret_token: Annotated[str | None, Header()] = None,
):
    return (await clients.telegram.webhook(await request.body(),
                                           x_telegram_bot_api_secret_token)).response()
