"""Prometheus metrics of the provisioner (labels never carry user or subscription ids)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PROVISIONS = Counter(
    "provisioner_provisions_total",
    "Provision job attempts by outcome (activated, extended, duplicate, retry, failed, ...)",
    ["outcome"],
)
PROVISION_LATENCY = Histogram(
    "provisioner_provision_latency_seconds",
    "Time from a paid invoice being recorded to its time being applied on the backend",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
BACKEND_CALLS = Histogram(
    "provisioner_backend_call_duration_seconds", "VPN backend call duration",
    ["backend", "operation"],
)
BACKEND_ERRORS = Counter(
    "provisioner_backend_errors_total", "VPN backend calls that failed", ["backend", "operation"]
)
RECONCILIATION_FIXES = Counter(
    "provisioner_reconciliation_fixes_total",
    "Drift between subscriptions and backend accounts repaired by reconciliation", ["kind"],
)
LIFECYCLE = Counter(
    "provisioner_subscription_transitions_total",
    "Subscription state changes (expired, suspended, resumed, refunded, ...)", ["transition"],
)
PLACEMENTS = Counter(
    "provisioner_placements_total",
    "New subscriptions placed on a server of the pool (placed) or left waiting (waiting)",
    ["outcome"],
)
POOL_FULL = Gauge(
    "provisioner_server_pool_full",
    "1 while the last placement in a location (or `any`) found no server with room",
    ["location"],
)
SERVER_LOAD = Gauge(
    "provisioner_server_load",
    "Subscriptions a server holds, as of its last placement", ["server"],
)
ACTIVE_SUBSCRIPTIONS = Gauge(
    "provisioner_active_subscriptions",
    "Subscriptions running now (ACTIVE or LIMITED, not past their expiry), sampled by the "
    "expiry sweep",
)
SERVER_UP = Gauge(
    "provisioner_server_up",
    "1 when a server of the pool answered its last health check, 0 when it did not", ["server"],
)
SUB_LINK_REQUESTS = Counter(
    "provisioner_sub_link_requests_total",
    "GET /sub/{token} answers by outcome: fetched (from the server), cached, not_found, "
    "unavailable (the server did not answer: 503)", ["outcome"],
)
MOVES = Counter(
    "provisioner_moves_total",
    "Steps of moves of an access to another server (started, waiting, switched, done, "
    "canceled, failed) by reason (LOCATION, DRAIN)", ["reason", "step"],
)
MOVES_OPEN = Gauge(
    "provisioner_moves_open",
    "Moves not done yet by status (WAITING: no server with room; PENDING; SWITCHED: the old "
    "account not revoked yet), sampled by the provision sweep", ["status"],
)
