"""Prometheus metrics of billing (no user or invoice ids in labels)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

INVOICE_TRANSITIONS = Counter(
    "billing_invoice_transitions_total", "Invoice state transitions, by the state entered",
    ["to_status"],
)
PAYMENT_SETTLE_SECONDS = Histogram(
    "billing_payment_detection_to_settlement_seconds",
    "Time from a payment being detected to it being settled",
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200, 21600),
)
WEBHOOK_SIGNATURE_FAILURES = Counter(
    "billing_webhook_signature_failures_total", "Provider webhooks refused for their signature",
    ["provider"],
)
PROVIDER_ERRORS = Counter(
    "billing_provider_errors_total", "Failed calls to a payment provider",
    ["provider", "operation"],
)
# Plan and renewal invoices as they are marked PAID (a top-up is counted when it buys a plan);
# `increase()` over it is revenue. The KPI endpoint's figures of record are in `billing.stats`.
REVENUE_USD = Counter(
    "billing_revenue_usd", "USD of plan and renewal invoices paid", ["kind"],
)
