"""The provisioner's client: subscriptions, access and their administration."""

from __future__ import annotations

import time

from contracts.public.common import WebhookAck
from contracts.public.insight import ProvisionerStatsOut
from contracts.public.moves import DrainOut, LocationBody, LocationChange
from contracts.public.servers import ServerCreate, ServerEnvelope, ServerList, ServerUpdate
from contracts.public.subscriptions import (
    AccessOut,
    AdminSubscriptionEnvelope,
    AdminSubscriptionList,
    AutoRenewBody,
    BackendCapabilities,
    ExtendBody,
    GrantOut,
    SubscriptionEnvelope,
    SubscriptionList,
    UsageOut,
)
from gateway.clients.base import Anonymous, Reply, ServiceClient, Who
from gateway.upstream import segment
from runtime.periods import Periods

SUBSCRIPTION_ACTIONS = ("extend", "suspend", "resume")
# The configured backend changes only with a deployment: its capabilities are kept this long.
CAPABILITIES_TTL_SECONDS = 60.0


class ProvisionerClient(ServiceClient):
    _capabilities: tuple[float, Reply[BackendCapabilities]] | None = None

    async def subscriptions(self, who: Who) -> Reply[SubscriptionList]:
        return await self.call(SubscriptionList, "GET", "/internal/subscriptions", who)

    async def grant(self, who: Who, invoice_id: str) -> Reply[GrantOut]:
        """What became of the caller's paid invoice (404 while the provisioner has none)."""
        return await self.call(GrantOut, "GET", f"/internal/grants/{segment(invoice_id)}", who)

    async def usage(self, who: Who, subscription_id: str) -> Reply[UsageOut]:
        path = f"/internal/subscriptions/{segment(subscription_id)}/usage"
        return await self.call(UsageOut, "GET", path, who)

    async def access(self, who: Who, subscription_id: str) -> Reply[AccessOut]:
        path = f"/internal/subscriptions/{segment(subscription_id)}/access"
        return await self.call(AccessOut, "GET", path, who)

    async def capabilities(self, who: Who) -> Reply[BackendCapabilities]:
        """What the configured VPN backend enforces itself (devices, traffic), asked once a
        minute."""
        cached = self._capabilities
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        reply = await self.call(BackendCapabilities, "GET", "/internal/backend", who)
        self._capabilities = (time.monotonic() + CAPABILITIES_TTL_SECONDS, reply)
        return reply

    async def remnawave_webhook(self, raw: bytes,
                                headers: dict[str, str]) -> Reply[WebhookAck]:
        """The Remnawave panel's delivery, as the exact bytes and headers it came with (the
        provisioner checks its signature)."""
        return await self.call(WebhookAck, "POST", "/internal/webhooks/remnawave",
                               Anonymous(id="remnawave"), content=raw, headers=headers)

    async def change_location(self, who: Who, subscription_id: str,
                              body: LocationBody) -> Reply[LocationChange]:
        """Move the access to a server of that location (202 with the move; 200: there
        already)."""
        path = f"/internal/subscriptions/{segment(subscription_id)}/location"
        return await self.call(LocationChange, "PUT", path, who, json=body.model_dump())

    async def set_auto_renew(self, who: Who, subscription_id: str,
                             body: AutoRenewBody) -> Reply[SubscriptionEnvelope]:
        path = f"/internal/subscriptions/{segment(subscription_id)}/auto-renew"
        return await self.call(SubscriptionEnvelope, "PUT", path, who, json=body.model_dump())

    async def admin_subscriptions(self, who: Who, *, user_id: str | None = None,
                                  status: str | None = None, limit: int = 20,
                                  cursor: str | None = None) -> Reply[AdminSubscriptionList]:
        return await self.call(AdminSubscriptionList, "GET", "/internal/admin/subscriptions",
                               who, params={"user_id": user_id, "status": status,
                                            "limit": limit, "cursor": cursor or None})

    async def change(self, who: Who, subscription_id: str, action: str,
                     body: ExtendBody | None = None) -> Reply[AdminSubscriptionEnvelope]:
        """`extend` (with its body), `suspend` or `resume`."""
        if action not in SUBSCRIPTION_ACTIONS:
            raise ValueError(f"unknown subscription action {action!r}")
        path = f"/internal/admin/subscriptions/{segment(subscription_id)}/{action}"
        return await self.call(AdminSubscriptionEnvelope, "POST", path, who,
                               json=body.model_dump() if body is not None else None)

    async def stats(self, who: Who, periods: Periods) -> Reply[ProvisionerStatsOut]:
        """The provisioner's KPI figures per period (docs/06-adr/0008)."""
        return await self.call(ProvisionerStatsOut, "GET", "/internal/admin/stats", who,
                               params=periods.params())

    # ---- the server pool (ADMIN) ------------------------------------------------------------
    async def servers(self, who: Who) -> Reply[ServerList]:
        return await self.call(ServerList, "GET", "/internal/admin/servers", who)

    async def server(self, who: Who, server_id: str) -> Reply[ServerEnvelope]:
        return await self.call(ServerEnvelope, "GET",
                               f"/internal/admin/servers/{segment(server_id)}", who)

    async def create_server(self, who: Who, body: ServerCreate) -> Reply[ServerEnvelope]:
        return await self.call(ServerEnvelope, "POST", "/internal/admin/servers", who,
                               json=body.model_dump(mode="json"))

    async def drain_server(self, who: Who, server_id: str) -> Reply[DrainOut]:
        return await self.call(DrainOut, "POST",
                               f"/internal/admin/servers/{segment(server_id)}/drain", who)

    async def update_server(self, who: Who, server_id: str,
                            body: ServerUpdate) -> Reply[ServerEnvelope]:
        return await self.call(ServerEnvelope, "PATCH",
                               f"/internal/admin/servers/{segment(server_id)}", who,
                               json=body.model_dump(mode="json", exclude_unset=True))
