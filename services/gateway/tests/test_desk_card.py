"""The customer card of the staff ticket view (`GET /admin/tickets/{id}` and the panel's ticket
page): the account from the gateway's own users, the newest subscription, the last 3 invoices
and the open tickets read from the services as the ticket's customer; a service that does not
answer leaves its part null and the ticket is still shown. The real gateway app with real
sessions, its clients calling real HTTP servers for the services (fake_services.py)."""

from __future__ import annotations

import httpx
import pytest
from gateway_tests_factories import PASSWORD, add_user
from gateway_tests_fake_services import INVOICE, SUBSCRIPTION, TICKET

from gateway.app import create_api


async def signed_in(db, settings, role: str) -> httpx.AsyncClient:
    app = create_api(settings)
    user = await add_user(db, role)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                               base_url="http://gw")
    r = await client.post("/api/v1/auth/login", json={"email": f"{user}@example.com",
                                                      "password": PASSWORD})
    assert r.status_code == 200, r.text
    client.app = app
    return client


@pytest.fixture
async def support(db, redis, gateway_settings, services, pg):
    customer = await add_user(db)
    await pg.execute("UPDATE identity.users SET telegram_linked = true, "
                     "telegram_username = 'ann' WHERE id = $1", customer)
    services.set("tickets", "GET", r"/internal/admin/tickets/[^/]+", 200,
                 {"ticket": {**TICKET, "user_id": customer}})
    services.set("tickets", "GET", r"/internal/tickets", 200, {"tickets": [
        {**TICKET, "id": "a"}, {**TICKET, "id": "b", "status": "CLOSED"}], "next_cursor": None})
    services.set("billing", "GET", r"/internal/invoices", 200, {"invoices": [
        {**INVOICE, "id": f"inv{i}", "status": "PAID"} for i in range(4)], "next_cursor": None})
    services.set("provisioner", "GET", r"/internal/subscriptions", 200, {"subscriptions": [
        {**SUBSCRIPTION, "id": "old", "expires_at": "2026-01-01T00:00:00+00:00"},
        {**SUBSCRIPTION, "id": "new", "expires_at": "2027-01-01T00:00:00+00:00"}]})
    client = await signed_in(db, gateway_settings, "SUPPORT")
    client.customer = customer
    yield client
    await client.aclose()
    await client.app.state.clients.close()
    await client.app.state.db.dispose()


async def test_the_staff_ticket_carries_its_customer_card(support, services):
    r = await support.get("/api/v1/admin/tickets/t-new")
    assert r.status_code == 200, r.text
    card = r.json()["ticket"]["customer"]
    assert card["id"] == support.customer and card["email"] == f"{support.customer}@example.com"
    assert card["telegram"] == "@ann" and card["registered_at"]
    assert card["subscription"] == {"status": "ACTIVE", "plan": "Month",
                                    "expires_at": "2027-01-01T00:00:00Z", "devices": 3}
    assert [i["id"] for i in card["last_invoices"]] == ["inv0", "inv1", "inv2"]
    assert card["last_invoices"][0] == {"id": "inv0", "status": "PAID", "amount_usd": "4.99",
                                        "created_at": "2026-12-01T12:00:00Z"}
    assert card["open_tickets"] == 1
    # read as the customer (the caller is SUPPORT: the admin lists would refuse it)
    reads = [c for c in services.calls if c.path in {
        "/internal/subscriptions", "/internal/invoices", "/internal/tickets"}]
    assert {(c.user_id, c.role) for c in reads} == {(support.customer, "USER")}


async def test_a_service_away_leaves_its_part_empty(support, services):
    services.set("provisioner", "GET", r"/internal/subscriptions", 503, {"code": "X"})
    services.set("billing", "GET", r"/internal/invoices", 500, {"code": "X"})
    r = await support.get("/api/v1/admin/tickets/t-new")
    assert r.status_code == 200, r.text
    card = r.json()["ticket"]["customer"]
    assert (card["subscription"], card["last_invoices"], card["open_tickets"]) == (None, None, 1)


async def test_the_panels_ticket_page_shows_the_card(support):
    page = await support.get("/admin/tickets/t-new")
    assert page.status_code == 200
    html = page.text
    card = html[html.index('data-testid="customer-card"'):]
    card = card[:card.index("</section>")]
    for part in (f"{support.customer}@example.com", "Telegram @ann", "Month · ACTIVE",
                 "3 devices", "$4.99 PAID", f"/admin/users?q={support.customer}"):
        assert part in card
    thread = await support.get("/admin/tickets/t-new/thread")  # the polling reads no card
    assert thread.status_code == 200
