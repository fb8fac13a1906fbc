"""Ticket attachments through the gateway, with the real tickets service behind it (its own
database of this TEST_SLOT): the owner uploads (API and the web ticket page's reply form), the
owner and staff download, anyone else gets 404; the body limit allows 5 MB files on the upload
routes only; the upload is rate limited."""

from __future__ import annotations

import httpx
import pytest
from gateway_tests_factories import PASSWORD, add_user
from gateway_tests_fake_services import KEY

from gateway.app import create_api
from gateway.security import csrf_token
from runtime.testing import recreate_and_migrate, serving, unit_database_url
from tickets.app import create_api as create_tickets_api
from tickets.config import Settings as TicketsSettings

from .conftest import make_settings

PNG = b"\x89PNG\r\n\x1a\n" + bytes(256)
PDF = b"%PDF-1.7\n" + b"%%EOF\n" * 8


@pytest.fixture(scope="module")
def tickets_db() -> str:
    url = unit_database_url("tickets")
    return recreate_and_migrate("tickets", url.rsplit("/", 1)[1])


@pytest.fixture
async def gateway(db, redis, services, tickets_db):
    tickets = create_tickets_api(TicketsSettings(DATABASE_URL=tickets_db,
                                                 INTERNAL_SIGNING_KEY=KEY))
    async with serving(tickets) as tickets_url:
        settings = make_settings(**{**services.settings(), "TICKETS_URL": tickets_url,
                                    "TICKET_UPLOADS_PER_USER_PER_HOUR": "4"})
        app = create_api(settings)
        clients: list[httpx.AsyncClient] = []

        async def signed_in(role: str = "USER") -> httpx.AsyncClient:
            user = await add_user(db, role)
            c = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                base_url="http://gw", timeout=30)
            r = await c.post("/api/v1/auth/login", json={"email": f"{user}@example.com",
                                                         "password": PASSWORD})
            assert r.status_code == 200, r.text
            # a multipart write with a cookie session needs the session's CSRF token, which
            # the API hands to the session it belongs to
            r = await c.get("/api/v1/auth/csrf")
            assert r.status_code == 200, r.text
            c.csrf = r.json()["csrf_token"]
            assert c.csrf == csrf_token(settings.internal_signing_key,
                                        c.cookies[settings.session_cookie])
            c.headers["X-CSRF-Token"] = c.csrf
            clients.append(c)
            return c

        yield signed_in
        for c in clients:
            await c.aclose()
        await app.state.clients.close()
        await app.state.db.dispose()
        await tickets.state.db.dispose()


async def open_ticket(c: httpx.AsyncClient) -> str:
    r = await c.post("/api/v1/tickets", json={"subject": "The app crashes", "body": "Look"})
    assert r.status_code == 201, r.text
    return r.json()["ticket"]["id"]


async def test_the_owner_uploads_and_reads_staff_read_and_another_customer_gets_404(gateway):
    owner, other, support = await gateway(), await gateway(), await gateway("SUPPORT")
    ticket_id = await open_ticket(owner)
    r = await owner.post(f"/api/v1/tickets/{ticket_id}/attachments",
                         files=[("file", ("crash.png", PNG, "image/png")),
                                ("file", ("log.pdf", PDF, "application/pdf"))],
                         data={"body": "Screenshot and log"})
    assert r.status_code == 201, r.text
    files = r.json()["message"]["attachments"]
    assert [(f["name"], f["content_type"]) for f in files] == [
        ("crash.png", "image/png"), ("log.pdf", "application/pdf")]
    path = f"/api/v1/tickets/{ticket_id}/attachments/{files[1]['id']}"

    got = await owner.get(path)
    assert got.status_code == 200 and got.content == PDF
    assert got.headers["content-type"] == "application/pdf"
    assert got.headers["content-disposition"].startswith('attachment; filename="log.pdf"')
    assert got.headers["x-content-type-options"] == "nosniff"
    assert "no-store" in got.headers["cache-control"]

    assert (await support.get(path)).content == PDF
    staff_page = await support.get(f"/admin/tickets/{ticket_id}/attachments/{files[1]['id']}")
    assert staff_page.status_code == 200 and staff_page.content == PDF

    refused = await other.get(path)
    assert refused.status_code == 404 and refused.json()["code"] == "NOT_FOUND"
    assert (await other.post(f"/api/v1/tickets/{ticket_id}/attachments",
                             files={"file": ("x.png", PNG, "image/png")})).status_code == 404
    assert (await other.get(f"/app/tickets/{ticket_id}/attachments/{files[1]['id']}")
            ).status_code == 404

    thread = (await owner.get(f"/api/v1/tickets/{ticket_id}")).json()["ticket"]["messages"]
    assert thread[1]["attachments"] == files


async def test_five_mb_files_pass_the_body_limit_on_the_upload_route_only(gateway):
    owner = await gateway()
    ticket_id = await open_ticket(owner)
    five_mb = PNG + bytes(5 * 1024 * 1024 - len(PNG))
    r = await owner.post(f"/api/v1/tickets/{ticket_id}/attachments",
                         files={"file": ("big.png", five_mb, "image/png")})
    assert r.status_code == 201, r.text
    assert r.json()["attachment"]["size"] == len(five_mb)
    r = await owner.post(f"/api/v1/tickets/{ticket_id}/attachments",
                         files={"file": ("bigger.png", five_mb + b"x", "image/png")})
    assert r.status_code == 413 and r.json()["code"] == "PAYLOAD_TOO_LARGE"
    # anywhere else the usual limit holds
    r = await owner.post(f"/api/v1/tickets/{ticket_id}/messages",
                         files={"file": ("big.png", five_mb, "image/png")})
    assert r.status_code == 413
    # a type the magic bytes do not back is a 400 with nothing stored
    r = await owner.post(f"/api/v1/tickets/{ticket_id}/attachments",
                         files={"file": ("page.png", b"<svg onload=alert(1)>", "image/png")})
    assert r.status_code == 400 and r.json()["details"][0]["type"] == "unsupported_type"
    r = await owner.post(f"/api/v1/tickets/{ticket_id}/attachments", json={"file": "x"})
    assert r.status_code == 400
    # a cookie session's multipart write without its CSRF token is refused
    r = await owner.post(f"/api/v1/tickets/{ticket_id}/attachments", headers={"X-CSRF-Token": ""},
                         files={"file": ("a.png", PNG, "image/png")})
    assert r.status_code == 403


async def test_uploads_are_rate_limited(gateway):
    owner = await gateway()
    ticket_id = await open_ticket(owner)
    statuses = [(await owner.post(f"/api/v1/tickets/{ticket_id}/attachments",
                                  files={"file": ("a.png", PNG, "image/png")})).status_code
                for _ in range(5)]
    assert statuses == [201, 201, 201, 201, 429]


async def test_the_web_reply_form_sends_files_and_the_thread_links_them(gateway):
    owner = await gateway()
    ticket_id = await open_ticket(owner)
    page = await owner.get(f"/app/tickets/{ticket_id}")
    assert 'enctype="multipart/form-data"' in page.text and 'type="file"' in page.text
    r = await owner.post(f"/app/tickets/{ticket_id}/messages",
                         data={"csrf_token": owner.csrf, "body": ""},
                         files={"file": ("invoice.pdf", PDF, "application/pdf")})
    assert r.status_code == 303, r.text
    page = await owner.get(f"/app/tickets/{ticket_id}")
    assert "📎 invoice.pdf" in page.text
    aid = page.text.split(f"/app/tickets/{ticket_id}/attachments/")[1].split('"')[0]
    assert (await owner.get(f"/app/tickets/{ticket_id}/attachments/{aid}")).content == PDF

    r = await owner.post(f"/app/tickets/{ticket_id}/messages",
                         data={"csrf_token": owner.csrf, "body": "and this"},
                         files={"file": ("notes.txt", b"plain text", "text/plain")})
    assert r.status_code == 400
    assert "Only PNG, JPEG and PDF files can be attached." in r.text
    # without files the reply form is as before: text required
    r = await owner.post(f"/app/tickets/{ticket_id}/messages",
                         data={"csrf_token": owner.csrf, "body": ""})
    assert r.status_code == 400
