"""The telegram service's client: account-linking links, the bot's webhook, Telegram sign-in
and password-reset messages, and broadcasts."""

from __future__ import annotations

from contracts.public.broadcasts import (
    BroadcastCreate,
    BroadcastEnvelope,
    BroadcastList,
    PreviewBody,
    PreviewOut,
)
from contracts.public.common import WebhookAck
from contracts.public.telegram import TelegramLinkOut
from gateway.clients.base import Anonymous, Reply, ServiceClient, Who, refusal
from gateway.upstream import segment

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

    # ---- broadcasts (ADMIN) ---------------------------------------------------------------
    async def broadcasts(self, who: Who, limit: int = 50) -> Reply[BroadcastList]:
        return await self.call(BroadcastList, "GET", "/internal/admin/broadcasts", who,
                               params={"limit": limit})

    async def broadcast(self, who: Who, broadcast_id: str) -> Reply[BroadcastEnvelope]:
        return await self.call(BroadcastEnvelope, "GET",
                               f"/internal/admin/broadcasts/{segment(broadcast_id)}", who)

    async def create_broadcast(self, who: Who, body: BroadcastCreate
                               ) -> Reply[BroadcastEnvelope]:
        return await self.call(BroadcastEnvelope, "POST", "/internal/admin/broadcasts", who,
                               json=body.model_dump(mode="json"))

    async def preview_broadcast(self, who: Who, broadcast_id: str, body: PreviewBody
                                ) -> Reply[PreviewOut]:
        return await self.call(PreviewOut, "POST",
                               f"/internal/admin/broadcasts/{segment(broadcast_id)}/preview",
                               who, json=body.model_dump(mode="json"))

    async def broadcast_action(self, who: Who, broadcast_id: str, step: str
                               ) -> Reply[BroadcastEnvelope]:
        """`step`: `send`, `pause`, `resume` or `cancel`."""
        return await self.call(BroadcastEnvelope, "POST",
                               f"/internal/admin/broadcasts/{segment(broadcast_id)}/{step}", who)
