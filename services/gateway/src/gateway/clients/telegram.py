"""The telegram service's client: account-linking links and the bot's webhook."""

from __future__ import annotations

from contracts.public.common import WebhookAck
from contracts.public.telegram import TelegramLinkOut
from gateway.clients.base import Anonymous, Reply, ServiceClient, Who


class TelegramClient(ServiceClient):
    async def link_token(self, who: Who) -> Reply[TelegramLinkOut]:
        return await self.call(TelegramLinkOut, "POST", "/internal/link-tokens", who)

    async def webhook(self, raw: bytes, secret_token: str | None) -> Reply[WebhookAck]:
        """An update from Telegram, as the exact bytes it came with (the service checks the
        secret token)."""
        headers = {"Content-Type": "application/json"}
        if secret_token is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret_token
        return await self.call(WebhookAck, "POST", "/internal/webhook", Anonymous(id="telegram"),
                               content=raw, headers=headers)
