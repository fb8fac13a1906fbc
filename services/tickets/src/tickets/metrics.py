"""Prometheus metrics of the tickets service (no user or ticket ids in labels)."""

from __future__ import annotations

from prometheus_client import Gauge, Histogram

# Observed once per ticket, when its first staff answer is written (the KPI endpoint's median
# first response, `tickets.stats`, is the figure of record). The product's goal is ≤ 2 h.
FIRST_RESPONSE_SECONDS = Histogram(
    "tickets_first_response_seconds",
    "Time from a ticket being opened to its first staff answer, in support hours",
    buckets=(60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800),
)

# Tickets not closed, by how long ago they were opened: sampled by the worker (`tickets.desk`
# `sample_open_tickets`), so a backlog of old tickets shows before any first response is late.
OPEN_TICKETS = Gauge(
    "tickets_open_by_age",
    "Tickets not closed, by age since opening: age=lt_1h, 1h_4h, 4h_24h, gt_24h",
    ["age"],
)
