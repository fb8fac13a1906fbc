"""The tickets service's client: a customer's tickets and the staff's support queue."""

from __future__ import annotations

from contracts.public.insight import TicketsStatsOut
from contracts.public.tickets import (
    AdminTicketEnvelope,
    AdminTicketList,
    AssignBody,
    AttachmentEnvelope,
    CannedReplyCreate,
    CannedReplyDeleted,
    CannedReplyEnvelope,
    CannedReplyList,
    MessageCreate,
    MessageEnvelope,
    NoteCreate,
    RatingCreate,
    TicketCreate,
    TicketEnvelope,
    TicketList,
)
from gateway.clients.base import Reply, ServiceClient, Who, refusal
from gateway.upstream import UpstreamResponse, segment
from runtime.periods import Periods


class TicketsClient(ServiceClient):
    async def open(self, who: Who, body: TicketCreate) -> Reply[TicketEnvelope]:
        return await self.call(TicketEnvelope, "POST", "/internal/tickets", who,
                               json=body.model_dump())

    async def tickets(self, who: Who, *, status: str | None = None, limit: int = 20,
                      cursor: str | None = None) -> Reply[TicketList]:
        return await self.call(TicketList, "GET", "/internal/tickets", who,
                               params={"status": status, "limit": limit,
                                       "cursor": cursor or None})

    async def ticket(self, who: Who, ticket_id: str) -> Reply[TicketEnvelope]:
        path = f"/internal/tickets/{segment(ticket_id)}"
        return await self.call(TicketEnvelope, "GET", path, who)

    async def reply(self, who: Who, ticket_id: str, body: MessageCreate) -> Reply[MessageEnvelope]:
        path = f"/internal/tickets/{segment(ticket_id)}/messages"
        return await self.call(MessageEnvelope, "POST", path, who, json=body.model_dump())

    async def attach(self, who: Who, ticket_id: str, content: bytes,
                     content_type: str) -> Reply[AttachmentEnvelope]:
        """The caller's multipart upload (`file` 1-5 times, `body`?), passed on as it came."""
        path = f"/internal/tickets/{segment(ticket_id)}/attachments"
        return await self.call(AttachmentEnvelope, "POST", path, who, content=content,
                               headers={"Content-Type": content_type})

    async def attachment(self, who: Who, ticket_id: str, attachment_id: str) -> UpstreamResponse:
        """A file's bytes and headers, for its ticket's owner or staff (the service's 404
        for anyone else)."""
        path = (f"/internal/tickets/{segment(ticket_id)}/attachments/"
                f"{segment(attachment_id)}")
        r = await self.send("GET", path, who)
        if r.status_code >= 400:
            raise refusal(r)
        return r

    async def close(self, who: Who, ticket_id: str) -> Reply[TicketEnvelope]:
        path = f"/internal/tickets/{segment(ticket_id)}/close"
        return await self.call(TicketEnvelope, "POST", path, who)

    # ---- staff ------------------------------------------------------------------------------
    async def queue(self, who: Who, *, status: str | None = None, limit: int = 20,
                    cursor: str | None = None) -> Reply[AdminTicketList]:
        return await self.call(AdminTicketList, "GET", "/internal/admin/tickets", who,
                               params={"status": status, "limit": limit,
                                       "cursor": cursor or None})

    async def staff_ticket(self, who: Who, ticket_id: str) -> Reply[AdminTicketEnvelope]:
        path = f"/internal/admin/tickets/{segment(ticket_id)}"
        return await self.call(AdminTicketEnvelope, "GET", path, who)

    async def answer(self, who: Who, ticket_id: str,
                     body: MessageCreate) -> Reply[MessageEnvelope]:
        path = f"/internal/admin/tickets/{segment(ticket_id)}/messages"
        return await self.call(MessageEnvelope, "POST", path, who, json=body.model_dump())

    async def staff_close(self, who: Who, ticket_id: str) -> Reply[AdminTicketEnvelope]:
        path = f"/internal/admin/tickets/{segment(ticket_id)}/close"
        return await self.call(AdminTicketEnvelope, "POST", path, who)

    async def stats(self, who: Who, periods: Periods) -> Reply[TicketsStatsOut]:
        """The tickets service's KPI figures per period (docs/06-adr/0008)."""
        return await self.call(TicketsStatsOut, "GET", "/internal/admin/stats", who,
                               params=periods.params())

    # ---- the support desk: notes, assignment, canned replies --------------------------------
    async def note(self, who: Who, ticket_id: str, body: NoteCreate) -> Reply[MessageEnvelope]:
        path = f"/internal/admin/tickets/{segment(ticket_id)}/notes"
        return await self.call(MessageEnvelope, "POST", path, who, json=body.model_dump())

    async def assign(self, who: Who, ticket_id: str, body: AssignBody,
                     name: str | None) -> Reply[AdminTicketEnvelope]:
        path = f"/internal/admin/tickets/{segment(ticket_id)}/assign"
        return await self.call(AdminTicketEnvelope, "POST", path, who, json=body.model_dump(),
                               params={"name": name})

    async def canned_replies(self, who: Who) -> Reply[CannedReplyList]:
        return await self.call(CannedReplyList, "GET", "/internal/admin/canned-replies", who)

    async def create_canned(self, who: Who,
                            body: CannedReplyCreate) -> Reply[CannedReplyEnvelope]:
        return await self.call(CannedReplyEnvelope, "POST", "/internal/admin/canned-replies",
                               who, json=body.model_dump())

    async def update_canned(self, who: Who, reply_id: str,
                            changes: dict) -> Reply[CannedReplyEnvelope]:
        path = f"/internal/admin/canned-replies/{segment(reply_id)}"
        return await self.call(CannedReplyEnvelope, "PATCH", path, who, json=changes)

    async def delete_canned(self, who: Who, reply_id: str) -> Reply[CannedReplyDeleted]:
        path = f"/internal/admin/canned-replies/{segment(reply_id)}"
        return await self.call(CannedReplyDeleted, "DELETE", path, who)

    async def rate(self, who: Who, ticket_id: str, body: RatingCreate) -> Reply[TicketEnvelope]:
        path = f"/internal/tickets/{segment(ticket_id)}/rating"
        return await self.call(TicketEnvelope, "POST", path, who,
                               json=body.model_dump(exclude_none=True))
