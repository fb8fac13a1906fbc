"""Typed clients of the upstream services: the only code in the gateway that calls a service.

`api/` (JSON) and `web/` (HTML) both go through these, so each action exists once.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.clients.base import ANONYMOUS, Reply, ServiceClient, Who
from gateway.clients.billing import BillingClient
from gateway.clients.provisioner import ProvisionerClient
from gateway.clients.telegram import TelegramClient
from gateway.clients.tickets import TicketsClient
from gateway.upstream import Upstream


@dataclass(frozen=True)
class Clients:
    billing: BillingClient
    tickets: TicketsClient
    provisioner: ProvisionerClient
    telegram: TelegramClient

    @classmethod
    def connect(cls, urls: dict[str, str], signing_key: str, timeout: float) -> Clients:
        """One client per service, each over its own pooled connection."""
        kinds = {"billing": BillingClient, "tickets": TicketsClient,
                 "provisioner": ProvisionerClient, "telegram": TelegramClient}
        return cls(**{name: kind(Upstream(name, urls[name], signing_key, timeout))
                      for name, kind in kinds.items()})

    def all(self) -> list[ServiceClient]:
        return [self.billing, self.provisioner, self.telegram, self.tickets]

    async def close(self) -> None:
        for client in self.all():
            await client.upstream.close()


__all__ = ["ANONYMOUS", "Clients", "Reply", "ServiceClient", "Who"]
