"""Shared fixtures: the whole system started as separate OS processes, like `make run` does."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis

from runtime.testing import await_for  # noqa: F401 - the e2e tests import it from here

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "deploy" / "local"))

from stack import Stack, check_infra, default_env, with_payment_fakes  # noqa: E402

# TEST_SLOT lets several test runs share this machine's infrastructure without colliding.
SLOT = int(os.environ.get("TEST_SLOT", "0"))
PORT_OFFSET = 1000 + 200 * SLOT
TEST_DB = f"vpn_test{SLOT or ''}"
BROKER_PREFIX = f"test{SLOT or ''}."
ADMIN_DSN = f"postgresql://postgres@127.0.0.1:5432/{TEST_DB}"
ADMIN_EMAIL = "root-admin@example.com"
ADMIN_PASSWORD = "admin password 1"
# The first takes new tickets while it keeps up (TELEGRAM_SUPPORT_SPREAD_BACKLOG).
SUPPORT_GROUPS = "-1001000000001,-1001000000011,-1001000000012"


def test_env() -> dict[str, str]:
    env = default_env(port_offset=PORT_OFFSET, db_name=TEST_DB, redis_db=1 + SLOT,
                      broker_prefix=BROKER_PREFIX)
    env.update({
        "LOGIN_PER_EMAIL_PER_MINUTE": "5",
        "TICKETS_PER_USER_PER_HOUR": "1000",
        # the shared stack's fuzz run writes far more than a customer would
        "TICKET_REPLIES_PER_USER_PER_HOUR": "100000",
        "TICKET_REPLIES_PER_TICKET_PER_HOUR": "100000",
        "TICKET_UPLOADS_PER_USER_PER_HOUR": "100000",
        "INVOICES_PER_USER_PER_HOUR": "100000",
        "REGISTER_PER_IP_PER_HOUR": "100000",
        "LOGIN_PER_IP_PER_MINUTE": "100000",
        "OUTBOX_POLL_SECONDS": "0.5",
        # three support groups (tests/e2e/test_support_groups.py), paced fast enough for tests
        "TELEGRAM_SUPPORT_CHAT_IDS": SUPPORT_GROUPS,
        "EMULATOR_FORUM_CHAT_IDS": SUPPORT_GROUPS,
        "TELEGRAM_SUPPORT_SEND_INTERVAL": "0.05",
        "TELEGRAM_SUPPORT_SPREAD_BACKLOG": "30",
        "TELEGRAM_SEND_RATE": "30",
        "BROKER_DELIVERY_LIMIT": "3",
        # today's KPIs renewed every second, so a test sees what it just did
        "STATS_LIVE_INTERVAL_MS": "1000",
        "ADMIN_BOOTSTRAP_EMAIL": ADMIN_EMAIL,
        # billing settings
        "PAYMENT_WATCH_INTERVAL_MS": "300",
        "INVOICE_EXPIRY_INTERVAL_MS": "1000",
        "PROVIDER_TIMEOUT_SECONDS": "2",
        # provisioner settings
        "PROVISION_ATTEMPTS": "3",
        "PROVISION_BACKOFF_MS": "300",
        "PROVISION_SWEEP_SECONDS": "1",
        "PROVISION_SWEEP_GRACE_SECONDS": "2",
        "RENEWAL_SWEEP_SECONDS": "1",
        # new subscriptions stay on the seeded server, whatever servers a test adds elsewhere
        "SERVER_DEFAULT_LOCATION": "default",
        # every provider at once, through its fake (the sandbox chain first: the default)
        "PAYMENT_FAKES": "all",
    })
    return with_payment_fakes(env)


test_env.__test__ = False  # a helper, not a test, even when imported into a test module


def reset_infrastructure(env: dict[str, str], db_name: str, broker_prefix: str) -> None:
    """What an earlier run of a stack left behind gone: its database, its Redis database, and
    its consumer queues and their dead letters (the suite's and the bench's stacks)."""

    async def drop_db():
        conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
        try:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                db_name)
            await conn.execute(f'DROP DATABASE IF EXISTS "{db_name}"')
        finally:
            await conn.close()

    asyncio.run(drop_db())
    redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    _delete_consumer_queues(env["RABBITMQ_URL"], broker_prefix)


# Every consumer queue of every service (deleted before a run so each run starts empty).
CONSUMER_QUEUES = [
    "tickets.telegram-events", "telegram.ticket-events", "gateway.identity-projections",
    "billing.events", "billing.telegram-links", "billing.identity-events",
    "billing.provisioning-events", "billing.stars-payments",
    "provisioner.billing-events",
    "provisioner.identity-events",
    "telegram.notifications", "telegram.identity-events",
]


def _delete_consumer_queues(rabbitmq_url: str, prefix: str) -> None:
    import aio_pika

    async def main():
        conn = await aio_pika.connect(rabbitmq_url)
        try:
            for name in CONSUMER_QUEUES:
                for q in (name, f"{name}.dlq"):
                    ch = await conn.channel()
                    try:
                        await ch.queue_delete(prefix + q)
                    except Exception:
                        pass
        finally:
            await conn.close()

    asyncio.run(main())


def _interrupt(*_):
    raise KeyboardInterrupt  # lets pytest run the teardown that stops the stack's processes


signal.signal(signal.SIGTERM, _interrupt)


@pytest.fixture(scope="session")
def stack():
    env = test_env()
    problems = check_infra(env)
    if problems:
        pytest.fail("infrastructure missing:\n" + "\n".join(problems))
    reset_infrastructure(env, TEST_DB, BROKER_PREFIX)
    s = Stack(env, log_dir=ROOT / ".run" / f"test-logs{SLOT or ''}")
    for f in s.log_dir.glob("*.log") if s.log_dir.exists() else []:
        f.unlink()
    s.migrate()
    s.seed_plans()
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def gateway_url(stack) -> str:
    return stack.api_url("gateway")


@pytest.fixture(scope="session")
def emulator_url(stack) -> str:
    return stack.env["TELEGRAM_API_BASE"]


@pytest.fixture
async def db():
    conn = await asyncpg.connect(ADMIN_DSN)
    yield conn
    await conn.close()


def wait_for(predicate, timeout: float = 20, interval: float = 0.1, message: str = "condition"):
    """Poll until `predicate()` returns something truthy; return it (fails at the deadline)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {message}; last value: {last!r}")


_counter = {"n": 0}


def unique_email(prefix: str = "user") -> str:
    _counter["n"] += 1
    return f"{prefix}-{os.getpid()}-{int(time.time() * 1000)}-{_counter['n']}@example.com"


def register(gateway_url: str, email: str | None = None, password: str = "correct horse 1"
             ) -> httpx.Client:
    """A signed-in client for a new customer."""
    client = httpx.Client(base_url=gateway_url + "/api/v1", timeout=15,
                          headers={"Content-Type": "application/json"})
    r = client.post("/auth/register", json={"email": email or unique_email(), "password": password})
    assert r.status_code == 201, r.text
    return client


def payment_fields(option: dict) -> dict:
    """What `POST /invoices` takes of a payment option (its `label` is for people)."""
    return {k: option[k] for k in ("provider", "asset", "network") if k in option}


def payment_option(client: httpx.Client) -> dict:
    """The first payment option, as `POST /invoices` and top-ups take it."""
    return payment_fields(client.get("/payment-options").json()["options"][0])


@pytest.fixture(scope="session")
def admin_client(gateway_url) -> httpx.Client:
    """A signed-in ADMIN (registered with ADMIN_BOOTSTRAP_EMAIL once per test run)."""
    client = register(gateway_url, ADMIN_EMAIL, ADMIN_PASSWORD)
    assert client.get("/auth/me").json()["user"]["role"] == "ADMIN"
    return client


def sql(query: str, *args) -> list[dict]:
    """The rows of a query on the test database, as its owner (a test may read every schema;
    the services never read each other's)."""

    async def main():
        conn = await asyncpg.connect(ADMIN_DSN)
        try:
            return [dict(r) for r in await conn.fetch(query, *args)]
        finally:
            await conn.close()

    return asyncio.run(main())


async def publish_envelope(envelope_json: dict, routing_key: str) -> None:
    """Publish an event onto the test run's exchange exactly as an outbox relay would."""
    await publish_envelopes([(envelope_json, routing_key)])


async def publish_envelopes(items: list[tuple[dict, str]]) -> None:
    """Publish several (envelope, routing key) pairs over one confirmed channel, in order."""
    import aio_pika
    import orjson

    conn = await aio_pika.connect(test_env()["RABBITMQ_URL"])
    try:
        ch = await conn.channel(publisher_confirms=True)
        ex = await ch.get_exchange(f"{BROKER_PREFIX}events")
        for envelope_json, routing_key in items:
            await ex.publish(aio_pika.Message(orjson.dumps(envelope_json),
                                              delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                              content_type="application/json"),
                             routing_key=routing_key)
    finally:
        await conn.close()


def metric_total(port: int, metric: str, **labels: str) -> float:
    """Sum of a counter's samples whose labels include `labels`, read from a /metrics page."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == metric and all(sample.labels.get(k) == v
                                             for k, v in labels.items()):
                total += sample.value
    return total


async def queue_depth(name: str) -> int:
    """Ready messages in one of the test run's queues (e.g. a dead-letter queue)."""
    import aio_pika

    conn = await aio_pika.connect(test_env()["RABBITMQ_URL"])
    try:
        ch = await conn.channel()
        q = await ch.declare_queue(f"{BROKER_PREFIX}{name}", passive=True)
        return q.declaration_result.message_count or 0
    finally:
        await conn.close()
