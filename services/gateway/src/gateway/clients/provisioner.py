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
    LinkEnvelope,
    LocationList,
    SubscriptionEnvelope,
    SubscriptionList,
    UsageOut,
)
from gateway.clients.base import ANONYMOUS, Anonymous, Reply, ServiceClient, Who, refusal
from gateway.upstream import UpstreamResponse, segment
from runtime.errors import ServiceUnavailable
from runtime.periods import Periods

SUBSCRIPTION_ACTIONS = ("extend", "suspend", "resume")
# The configured backend changes only with a deployment: its capabilities are kept this long.
CAPABILITIES_TTL_SECONDS = 60.0
# `GET /sub/{token}` while the VPN server (or the provisioner) cannot answer: 503, retry then.
SUB_RETRY_AFTER_SECONDS = 30


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

    # ---- the stable subscription link -------------------------------------------------------
    async def subscription_content(self, token: str, user_agent: str = "") -> UpstreamResponse:
        """The subscription behind a link token, as the provisioner serves it (body, media
        type, the clients' headers) for the app's `user_agent`; an unknown or revoked token
        is its 404; anything else that is not the content is a 503 with Retry-After."""
        retry = {"Retry-After": str(SUB_RETRY_AFTER_SECONDS)}
        try:
            r = await self.send("GET", f"/internal/sub/{segment(token)}", ANONYMOUS,
                                headers={"X-Client-User-Agent": user_agent[:300]})
        except ServiceUnavailable as exc:
            raise ServiceUnavailable("The VPN server is unavailable; try again shortly",
                                     headers=retry) from exc
        if r.status_code == 200:
            return r
        if r.status_code == 404:
            raise refusal(r)
        raise ServiceUnavailable("The VPN server is unavailable; try again shortly",
                                 headers=retry)

    async def rotate_link(self, who: Who, subscription_id: str, *,
                          staff: bool = False) -> Reply[LinkEnvelope]:
        """A new link token for the caller's own subscription (`staff`: anyone's)."""
        return await self.call(LinkEnvelope, "POST", self._link_path(subscription_id, staff),
                               who)

    async def revoke_link(self, who: Who, subscription_id: str, *,
                          staff: bool = False) -> UpstreamResponse:
        """The link refused from now on (204, no body)."""
        r = await self.send("DELETE", self._link_path(subscription_id, staff), who)
        if r.status_code >= 400:
            raise refusal(r)
        return r

    @staticmethod
    def _link_path(subscription_id: str, staff: bool) -> str:
        return (f"/internal{'/admin' if staff else ''}/subscriptions/"
                f"{segment(subscription_id)}/link")

    async def locations(self) -> Reply[LocationList]:
        """Locations with a server taking new customers now (public)."""
        return await self.call(LocationList, "GET", "/internal/locations", ANONYMOUS)

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
