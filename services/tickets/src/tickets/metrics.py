"""Prometheus metrics of the tickets service (no user or ticket ids in labels)."""

from __future__ import annotations

from prometheus_client import Histogram

# Observed once per ticket, when its first staff answer is written (the KPI endpoint's median
# first response, `tickets.stats`, is the figure of record). The product's goal is ≤ 2 h.
FIRST_RESPONSE_SECONDS = Histogram(
    "tickets_first_response_seconds",
    "Time from a ticket being opened to its first staff answer",
    buckets=(60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800),
)
