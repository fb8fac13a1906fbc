"""Metrics of the telegram worker (the API's webhook counter lives in `telegram.app`)."""

from __future__ import annotations

from prometheus_client import Gauge

UPDATES_UNPROCESSED = Gauge(
    "telegram_updates_unprocessed",
    "Stored webhook updates not processed yet: state=pending (never failed) or failing",
    ["state"],
)
