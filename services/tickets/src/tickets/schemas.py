"""Request and response models of the tickets internal API: the public shapes of
`contracts.public.tickets`, which the gateway declares too."""

from __future__ import annotations

from contracts.public.tickets import (
    AdminTicketEnvelope,
    AdminTicketList,
    AdminTicketOut,
    AssignBody,
    CannedReplyCreate,
    CannedReplyDeleted,
    CannedReplyEnvelope,
    CannedReplyList,
    CannedReplyOut,
    CannedReplyUpdate,
    MessageCreate,
    MessageEnvelope,
    MessageOut,
    NoteCreate,
    RatingCreate,
    TicketCreate,
    TicketEnvelope,
    TicketList,
    TicketOut,
)

__all__ = ["AdminTicketEnvelope", "AdminTicketList", "AdminTicketOut", "AssignBody",
           "CannedReplyCreate", "CannedReplyDeleted", "CannedReplyEnvelope", "CannedReplyList",
           "CannedReplyOut", "CannedReplyUpdate", "MessageCreate", "MessageEnvelope", "MessageOut",
           "NoteCreate", "RatingCreate", "TicketCreate", "TicketEnvelope", "TicketList",
           "TicketOut"]
