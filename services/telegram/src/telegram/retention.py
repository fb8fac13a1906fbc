"""What the telegram service purges: processed and discarded updates, delivered messages,
spent link and login tokens."""

from __future__ import annotations

from runtime.retention import Rule, outbox_inbox_rules
from telegram.config import Settings
from telegram.models import (
    DiscardedUpdate,
    LinkToken,
    LoginToken,
    Outgoing,
    ReceivedUpdate,
    inbox,
    outbox,
)


def rules(settings: Settings) -> list[Rule]:
    return [Rule("updates_processed", ReceivedUpdate.__table__, "processed_at",
                 settings.inbox_retention_days),
            Rule("updates_discarded", DiscardedUpdate.__table__, "received_at",
                 settings.inbox_retention_days),
            Rule("outgoing_done", Outgoing.__table__, "sent_at", 30),
            Rule("outgoing_failed", Outgoing.__table__, "created_at", 30,
                 where=lambda t: t.c.status == "FAILED"),
            Rule("link_tokens_expired", LinkToken.__table__, "expires_at", 1),
            Rule("login_tokens_expired", LoginToken.__table__, "expires_at", 1),
            *outbox_inbox_rules(outbox, inbox, settings.outbox_retention_days,
                                settings.inbox_retention_days)]
