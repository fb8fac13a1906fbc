"""Small pure helpers deciding what a page shows (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import get_args

from contracts.public.billing import InvoiceStatus
from contracts.public.servers import ServerBackend, ServerStatus
from contracts.public.subscriptions import SubscriptionStatus
from contracts.public.tickets import TicketStatus

TICKET_STATUSES = get_args(TicketStatus)
INVOICE_STATUSES = get_args(InvoiceStatus)
SUBSCRIPTION_STATUSES = get_args(SubscriptionStatus)
SERVER_BACKENDS = get_args(ServerBackend)
SERVER_STATUSES = get_args(ServerStatus)
# Running subscriptions: time counts and the access works (LIMITED: once its traffic renews).
RUNNING = ("ACTIVE", "LIMITED")


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def current(subscriptions: list[dict]) -> dict | None:
    """The subscription the dashboard is about: the active one ending last, else the latest."""
    if not subscriptions:
        return None
    active = [s for s in subscriptions if s["status"] in RUNNING]
    pool = active or subscriptions
    return max(pool, key=lambda s: s["expires_at"])


RENEWAL_BANNER_DAYS = 7  # the first expiry reminder's day


def renewal_due(subscription: dict | None, now: datetime | None = None) -> dict | None:
    """What the dashboard's renewal banner is about: a subscription that ends within
    `RENEWAL_BANNER_DAYS`, or has ended; None when there is nothing to say. `auto_renew`: the
    renewal will be tried, so the banner shows only if the balance is short."""
    if subscription is None or subscription["status"] not in (*RUNNING, "EXPIRED"):
        return None
    ends = _time(subscription["expires_at"])
    now = now or datetime.now(UTC)
    running = subscription["status"] in RUNNING
    if running and ends - now > timedelta(days=RENEWAL_BANNER_DAYS):
        return None
    auto = subscription.get("auto_renew") or {}
    plan_id = auto.get("plan_id") or subscription["plan_id"]
    plan_id = None if plan_id == "trial" else plan_id
    return {"expired": subscription["status"] == "EXPIRED", "expires_at": ends,
            "plan_id": plan_id, "auto_renew": bool(auto.get("enabled")) and plan_id is not None
            and running,
            "pay_url": f"/app/buy/{plan_id}" if plan_id else "/app/buy"}


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


def platform_of(user_agent: str | None) -> str | None:
    """The customer's platform as the VPN apps list them, from the browser's User-Agent (None:
    it does not say)."""
    ua = (user_agent or "").lower()
    if "android" in ua:
        return "androidtv" if any(k in ua for k in ("android tv", "googletv", "aft", "bravia")) \
            else "android"
    if any(k in ua for k in ("iphone", "ipad", "ipod")):
        return "ios"
    if "apple tv" in ua or "appletv" in ua or "tvos" in ua:
        return "tvos"
    if "windows" in ua:
        return "windows"
    if "macintosh" in ua or "mac os x" in ua:
        return "macos"
    if "linux" in ua or "x11" in ua:
        return "linux"
    return None


def apps_for(apps: list[dict], platform: str | None) -> tuple[list[dict], list[dict]]:
    """The import buttons for the customer's platform first, the others apart (all of them
    first when the platform is unknown)."""
    if platform is None:
        return list(apps), []
    mine = [a for a in apps if platform in a["platforms"]]
    return mine, [a for a in apps if platform not in a["platforms"]]
