"""What billing purges (run by the shared `retention_cleanup` schedule): idempotency keys past
their TTL, published outbox rows and old inbox ids. Plans, invoices, payments and provider
events are business and audit records and are kept."""

from __future__ import annotations

from billing.config import Settings
from billing.models import IdempotencyKey, inbox, outbox
from runtime.retention import Rule, outbox_inbox_rules


def rules(settings: Settings) -> list[Rule]:
    return [Rule("idempotency_keys_expired", IdempotencyKey.__table__, "created_at",
                 settings.idempotency_ttl_hours / 24),
            *outbox_inbox_rules(outbox, inbox, settings.outbox_retention_days,
                                settings.inbox_retention_days)]
