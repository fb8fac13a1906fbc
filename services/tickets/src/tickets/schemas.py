"""Request and response models of the tickets internal API: the public shapes of
`contracts.public.tickets`, which the gateway declares too."""

from __future__ import annotations

from contracts.public.tickets import (
    AdminTicketEnvelope,
    AdminTicketList,
    AdminTicketOut,
    MessageCreate,
    MessageEnvelope,
    MessageOut,
    TicketCreate,
    TicketEnvelope,
    TicketList,
    TicketOut,
)

__all__ = ["AdminTicketEnvelope", "AdminTicketList", "AdminTicketOut", "MessageCreate",
           "MessageEnvelope", "MessageOut", "TicketCreate", "TicketEnvelope", "TicketList",
           "TicketOut"]
