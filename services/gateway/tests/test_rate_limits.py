"""The writes a customer can repeat are rate limited, on the API and on the web panel alike:
ticket creation, ticket replies (per user, and per user on one ticket) and invoice creation, each
429 `RATE_LIMITED` with `Retry-After`.

The real gateway app with small limits against Redis, its clients calling real HTTP servers that
stand in for the services (fake_services.py); only the session lookup is replaced.
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from fastapi import Request

from gateway.api.deps import Caller, current_caller
from gateway.app import create_api
from gateway.config import Settings
from gateway.ratelimit import RateLimiter
from gateway.repository import SignedInUser
from gateway.web.deps import checked_form, optional_caller

LIMITS = {"TICKETS_PER_USER_PER_HOUR": 2, "TICKET_REPLIES_PER_USER_PER_HOUR": 6,
          "TICKET_REPLIES_PER_TICKET_PER_HOUR": 3, "INVOICES_PER_USER_PER_HOUR": 2}


def _caller(user_id: str) -> Caller:
    user = SignedInUser(id=user_id, email=f"{user_id}@example.com", role="USER",
                        is_blocked=False, created_at=datetime.now(UTC), telegram_linked=False,
                        telegram_username=None)
    return Caller(user, "token")


@pytest.fixture
async def gateway(redis, services):
    app = create_api(Settings(**LIMITS, **services.settings()))
    app.state.limiter = app.state.limits.limiter = RateLimiter(redis)

    def signed_in(request: Request) -> Caller:
        caller = _caller(request.headers.get("x-test-user", "u1"))
        request.state.lang = "en"
        request.state.web_caller = caller
        return caller

    async def form(request: Request) -> dict[str, str]:
        return {k: str(v) for k, v in (await request.form()).items()}

    app.dependency_overrides[current_caller] = signed_in
    app.dependency_overrides[optional_caller] = signed_in
    app.dependency_overrides[checked_form] = form
    yield app, services
    await app.state.clients.close()


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


def _is_rate_limited(r: httpx.Response) -> bool:
    return r.status_code == 429 and int(r.headers["Retry-After"]) > 0


async def test_replies_are_limited_per_ticket_and_per_user_on_api_and_web(gateway):
    app, services = gateway
    reply = {"body": "still broken"}
    async with _client(app) as c:
        first = [await c.post("/api/v1/tickets/tA/messages", json=reply) for _ in range(4)]
        assert [r.status_code for r in first[:3]] == [201, 201, 201]
        assert _is_rate_limited(first[3]), first[3].text
        assert first[3].json()["code"] == "RATE_LIMITED"
        # another ticket has its own bucket until the user's (6 tries) is spent; web counts too
        assert (await c.post("/api/v1/tickets/tB/messages", json=reply)).status_code == 201
        web = await c.post("/app/tickets/tB/messages", data=reply)
        assert web.status_code == 303, web.text
        assert _is_rate_limited(await c.post("/api/v1/tickets/tC/messages", json=reply))
        assert _is_rate_limited(await c.post("/app/tickets/tC/messages", data=reply))
        # someone else is not affected
        other = await c.post("/api/v1/tickets/tA/messages", json=reply,
                             headers={"x-test-user": "u2"})
        assert other.status_code == 201
    assert len(services.writes("tickets")) == 6  # refused replies never reach the service


async def test_invoice_creation_is_limited_per_user_on_api_and_web(gateway):
    app, services = gateway
    body = {"plan_id": "p1", "asset": "USDT", "network": "TRON"}
    async with _client(app) as c:
        api = await c.post("/api/v1/invoices", json=body, headers={"Idempotency-Key": "k1"})
        assert api.status_code == 201, api.text
        web = await c.post("/app/invoices", data={"plan_id": "p1", "option": "USDT/TRON",
                                                  "idempotency_key": "k2"})
        assert web.status_code == 303, web.text
        refused = await c.post("/api/v1/invoices", json=body, headers={"Idempotency-Key": "k3"})
        assert _is_rate_limited(refused) and refused.json()["code"] == "RATE_LIMITED"
        assert _is_rate_limited(await c.post("/app/invoices", data={
            "plan_id": "p1", "option": "USDT/TRON", "idempotency_key": "k4"}))
    assert services.writes("billing").count("POST /internal/invoices") == 2


async def test_ticket_creation_is_limited_per_user_on_api_and_web(gateway):
    app, services = gateway
    body = {"subject": "No handshake", "body": "It times out"}
    async with _client(app) as c:
        assert (await c.post("/api/v1/tickets", json=body)).status_code == 201
        assert (await c.post("/app/tickets", data=body)).status_code == 303
        assert _is_rate_limited(await c.post("/api/v1/tickets", json=body))
        assert _is_rate_limited(await c.post("/app/tickets", data=body))
    assert services.writes("tickets").count("POST /internal/tickets") == 2


async def test_location_changes_are_limited_per_user(gateway):
    app, services = gateway
    services.set("provisioner", "PUT", r"/internal/subscriptions/[^/]+/location", 202,
                 {"location_id": "nl-ams", "move": None})
    async with _client(app) as c:
        answers = [await c.put("/api/v1/subscriptions/s1/location",
                               json={"location_id": "nl-ams"}) for _ in range(11)]
        assert [r.status_code for r in answers[:10]] == [202] * 10
        assert _is_rate_limited(answers[10]) and answers[10].json()["code"] == "RATE_LIMITED"
        bad = await c.put("/api/v1/subscriptions/s1/location", json={"location_id": "NL"},
                          headers={"x-test-user": "u2"})
        assert bad.status_code == 400 and bad.json()["code"] == "VALIDATION_ERROR"
    assert services.writes("provisioner").count("PUT /internal/subscriptions/s1/location") == 10
