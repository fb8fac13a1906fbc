"""Small pure helpers deciding what a page shows (no I/O)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import get_args

from contracts.public.billing import InvoiceStatus
from contracts.public.subscriptions import SubscriptionStatus
from contracts.public.tickets import TicketStatus

TICKET_STATUSES = get_args(TicketStatus)
INVOICE_STATUSES = get_args(InvoiceStatus)
SUBSCRIPTION_STATUSES = get_args(SubscriptionStatus)


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def current(subscriptions: list[dict]) -> dict | None:
    """The subscription the dashboard is about: the active one ending last, else the latest."""
    if not subscriptions:
        return None
    active = [s for s in subscriptions if s["status"] == "ACTIVE"]
    pool = active or subscriptions
    return max(pool, key=lambda s: s["expires_at"])


def granted_by(invoice: dict, plan: dict | None, subscriptions: list[dict]) -> dict | None:
    """The active subscription that already includes a paid invoice's time, if any yet.

    Provisioning follows payment asynchronously: until the provisioner has applied the invoice,
    no active subscription reaches `paid_at + duration_days`.
    """
    paid_at = _time(invoice.get("paid_at"))
    active = [s for s in subscriptions if s["status"] == "ACTIVE"]
    if paid_at is None or not active:
        return None
    if plan is None:
        return current(active)
    needed = paid_at + timedelta(days=plan["duration_days"]) - timedelta(minutes=1)
    covering = [s for s in active if _time(s["expires_at"]) >= needed]
    return current(covering) if covering else None


def invoice_version(invoice: dict, subscription: dict | None) -> str:
    """Changes whenever the live part of the invoice page would change."""
    confirmations = ",".join(str(p.get("confirmations")) + p.get("status", "")
                             for p in invoice.get("payments") or [])
    return f"{invoice['status']}:{confirmations}:{bool(subscription)}"


def payment_target(invoice: dict) -> str | None:
    """What the payment box's QR code encodes; none once the invoice no longer takes payments."""
    if invoice["status"] not in {"CREATED", "PENDING"}:
        return None
    return invoice.get("payment_url") or invoice.get("address")


def invoice_settled(invoice: dict, subscription: dict | None) -> bool:
    """Nothing more will change on its own: the page stops polling."""
    if invoice["status"] == "PAID":  # a top-up is done when paid; a plan once it is granted
        return invoice.get("kind") == "TOP_UP" or subscription is not None
    return invoice["status"] not in {"CREATED", "PENDING"}


def ticket_version(ticket: dict) -> str:
    return f"{ticket['status']}:{len(ticket.get('messages') or [])}"


def ticket_status(value: str | None) -> str | None:
    return value if value in TICKET_STATUSES else None


def invoice_status(value: str | None) -> str | None:
    return value if value in INVOICE_STATUSES else None


def subscription_status(value: str | None) -> str | None:
    return value if value in SUBSCRIPTION_STATUSES else None
