"""Metrics of the telegram service (the API's webhook counters live in `telegram.app`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

UPDATES_UNPROCESSED = Gauge(
    "telegram_updates_unprocessed",
    "Stored webhook updates not processed yet: state=pending (never failed) or failing",
    ["state"],
)

PRE_CHECKOUT_ANSWERS = Counter(
    "telegram_pre_checkout_answers_total",
    "Telegram Stars pre-checkout queries answered: outcome=ok, a refusal reason, or "
    "billing_unavailable",
    ["outcome"],
)
