"""What the provisioner purges: published outbox rows and processed inbox ids.

Subscriptions, grants and backend accounts are kept: grants are the record of which invoice
bought which time (refunds and support need it), and a subscription lives as long as its user.
"""

from __future__ import annotations

from provisioner.config import Settings
from provisioner.models import inbox, outbox
from runtime.retention import Rule, outbox_inbox_rules


def rules(settings: Settings) -> list[Rule]:
    return outbox_inbox_rules(outbox, inbox, settings.outbox_retention_days,
                              settings.inbox_retention_days)
