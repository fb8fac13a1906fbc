"""The access page's location choice: shown while there is more than one location to go to,
posted as the customer's own `PUT /internal/subscriptions/{id}/location` (the API's rate
limit), and each answer (moving, there already, no room, a move under way) a notice on the
page. The real gateway app with real sessions, its clients calling real HTTP servers for the
services (fake_services.py)."""

from __future__ import annotations

import json

import httpx
import pytest
from gateway_tests_factories import PASSWORD, add_user

from gateway.app import create_api
from gateway.security import csrf_token

ACCESS = {"backend": "sandbox", "access_url": "ss://key", "config": {},
          "fetched_at": "2026-12-01T12:00:00+00:00", "subscription_url": None, "apps": []}
LOCATIONS = {"locations": [{"id": "de-fra", "name": "Frankfurt", "country": "DE"},
                           {"id": "nl-ams", "name": "Amsterdam", "country": "NL"}]}
MOVE = {"id": "m1", "subscription_id": "s1", "reason": "LOCATION", "status": "PENDING",
        "from_location": "de-fra", "to_location": "nl-ams", "created_at": "2026-12-01T12:00:00Z",
        "updated_at": "2026-12-01T12:00:00Z", "done_at": None}
PATH = r"/internal/subscriptions/s1/location"


@pytest.fixture
async def customer(db, redis, gateway_settings, services):
    services.set("provisioner", "GET", r"/internal/subscriptions/s1/access", 200, ACCESS)
    services.set("provisioner", "GET", r"/internal/locations", 200, LOCATIONS)
    app = create_api(gateway_settings)
    user = await add_user(db, "USER")
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                               base_url="http://gw")
    r = await client.post("/api/v1/auth/login", json={"email": f"{user}@example.com",
                                                      "password": PASSWORD})
    assert r.status_code == 200, r.text
    client.user_id = user
    client.csrf = csrf_token(gateway_settings.internal_signing_key,
                             client.cookies[gateway_settings.session_cookie])
    yield client
    await client.aclose()
    await app.state.clients.close()
    await app.state.db.dispose()


async def move(customer, location: str = "nl-ams") -> str:
    r = await customer.post("/app/subscriptions/s1/location",
                            data={"csrf_token": customer.csrf, "location_id": location})
    assert r.status_code == 303, r.text
    return r.headers["location"]


async def test_the_access_page_moves_the_access_and_says_what_happened(customer, services):
    page = await customer.get("/app/access")
    assert page.status_code == 200 and 'data-testid="location-form"' in page.text
    assert '<option value="nl-ams">Amsterdam</option>' in page.text
    services.set("provisioner", "PUT", PATH, 202, {"location_id": "nl-ams", "move": MOVE})
    assert await move(customer) == "/app/access?done=location_moving"
    sent = [c for c in services.calls if c.method == "PUT" and c.path == PATH]
    assert [(json.loads(c.body), c.user_id) for c in sent] == [
        ({"location_id": "nl-ams"}, customer.user_id)]
    notice = await customer.get("/app/access?done=location_moving")
    assert "moving to the new location" in notice.text
    services.set("provisioner", "PUT", PATH, 200, {"location_id": "nl-ams", "move": None})
    assert await move(customer) == "/app/access?done=location_same"
    for code, done in (("POOL_FULL", "location_full"), ("MOVE_IN_PROGRESS", "location_busy"),
                       ("SUBSCRIPTION_ENDED", "location_refused")):
        services.set("provisioner", "PUT", PATH, 409, {"code": code, "message": "no"})
        assert await move(customer) == f"/app/access?done={done}"
    assert await move(customer, "NOT A CODE") == "/app/access?done=location_refused"
    assert len([c for c in services.calls if c.method == "PUT"]) == 5  # the bad one never sent


async def test_one_location_or_none_known_shows_no_choice(customer, services):
    services.set("provisioner", "GET", r"/internal/locations", 200,
                 {"locations": LOCATIONS["locations"][:1]})
    assert 'data-testid="location-form"' not in (await customer.get("/app/access")).text
    services.set("provisioner", "GET", r"/internal/locations", 503,
                 {"code": "SERVICE_UNAVAILABLE", "message": "away"})
    page = await customer.get("/app/access")
    assert page.status_code == 200 and 'data-testid="location-form"' not in page.text
