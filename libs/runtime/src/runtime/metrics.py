"""Prometheus metrics every service exposes (RED for HTTP, messages, jobs, outbox)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests handled", ["service", "method", "route", "status"]
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds", "HTTP request duration", ["service", "method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
MESSAGES_HANDLED = Counter(
    "messages_handled_total", "Broker messages handled", ["queue", "routing_key", "outcome"]
)
MESSAGE_DURATION = Histogram(
    "message_handle_duration_seconds", "Broker message handling duration", ["queue"]
)
JOBS_HANDLED = Counter("jobs_handled_total", "Jobs processed", ["queue", "name", "outcome"])
OUTBOX_PUBLISHED = Counter("outbox_published_total", "Outbox events published", ["producer"])
OUTBOX_LAG = Gauge(
    "outbox_lag_seconds", "Age of the oldest unpublished outbox event", ["producer"]
)
BROKER_QUEUE_MESSAGES = Gauge("broker_queue_messages", "Ready messages in a consumer queue",
                              ["queue"])
BROKER_DEAD_LETTERS = Gauge("broker_dead_letters", "Messages in a consumer's dead-letter queue",
                            ["queue"])
JOB_QUEUE_JOBS = Gauge("job_queue_jobs", "Jobs in a BullMQ queue by state", ["queue", "state"])
