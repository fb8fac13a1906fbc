"""What the tickets service purges: closed tickets after TICKET_RETENTION_DAYS, outbox/inbox."""

from __future__ import annotations

from runtime.retention import Rule, outbox_inbox_rules
from tickets.config import Settings
from tickets.models import Ticket, inbox, outbox


def rules(settings: Settings) -> list[Rule]:
    return [Rule("tickets_closed", Ticket.__table__, "closed_at", settings.ticket_retention_days,
                 where=lambda t: t.c.status == "CLOSED"),
            *outbox_inbox_rules(outbox, inbox, settings.outbox_retention_days,
                                settings.inbox_retention_days)]
