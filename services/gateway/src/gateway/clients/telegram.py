"""The telegram service's client: account-linking links, the bot's webhook, and Telegram
sign-in and password-reset messages."""

from __future__ import annotations

from contracts.public.common import WebhookAck
from contracts.public.telegram import TelegramLinkOut
from gateway.clients.base import Anonymous, Reply, ServiceClient, Who, refusal

GATEWAY = Anonymous(id="gateway")


class TelegramClient(ServiceClient):
    async def link_token(self, who: Who) -> Reply[TelegramLinkOut]:
        return await self.call(TelegramLinkOut, "POST", "/internal/link-tokens", who)

    async def redeem_login_token(self, token: str) -> dict:
        """The account a bot's `/login` link signs in (the link is spent); 401 if none."""
        return await self.call_json("POST", "/internal/login-tokens/redeem", GATEWAY,
                                    json={"token": token})

    async def account_by_telegram(self, telegram_user_id: int) -> dict | None:
        r = await self.send("GET", f"/internal/accounts/by-telegram/{telegram_user_id}",
                            GATEWAY)
        if r.status_code == 404:
            return None
        if r.status_code >= 400:
            raise refusal(r)
        return r.json()

    async def send_password_reset(self, user_id: str, url: str, minutes: int) -> None:
        await self.call_json("POST", "/internal/password-reset-notices", GATEWAY,
                             json={"user_id": user_id, "url": url, "minutes": minutes})

    async def webhook(self, raw: bytes, secret_token: str | None) -> Reply[WebhookAck]:
        """An update from Telegram, as the exact bytes it came with (the service checks the
        secret token)."""
        headers = {"Content-Type": "application/json"}
        if secret_token is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret_token
        return await self.call(WebhookAck, "POST", "/internal/webhook", Anonymous(id="telegram"),
                               content=raw, headers=headers)
