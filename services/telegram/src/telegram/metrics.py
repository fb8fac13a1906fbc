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

BROADCAST_MESSAGES = Counter(
    "telegram_broadcast_messages_total",
    "Broadcast sends by outcome: sent, failed, blocked (the user blocked the bot), retry "
    "(transient, tried again), held (Telegram's 429: sent again after retry_after)",
    ["outcome"],
)

BROADCAST_HOLDS = Counter(
    "telegram_broadcast_holds_total",
    "Telegram 429 answers to a broadcast send: each holds every broadcast for its retry_after",
)

BROADCAST_RESENT = Counter(
    "telegram_broadcast_resent_total",
    "Broadcast recipients whose send was in flight when a worker stopped, sent again (they "
    "may have the message twice)",
)
