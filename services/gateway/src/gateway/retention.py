"""What the gateway purges: expired sessions, old outbox/inbox rows. Audit entries stay."""

from __future__ import annotations

from gateway.config import Settings
from gateway.models import Session, inbox, outbox
from runtime.retention import Rule, outbox_inbox_rules


def rules(settings: Settings) -> list[Rule]:
    return [Rule("sessions_expired", Session.__table__, "expires_at", 0.0001),
            *outbox_inbox_rules(outbox, inbox, settings.outbox_retention_days,
                                settings.inbox_retention_days)]
