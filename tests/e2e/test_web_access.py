"""Who may open what in the browser: sign-in redirects, 403 and 404 pages, CSRF, languages."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import httpx
from playwright.sync_api import expect

from tests.conftest import ROOT, register
from tests.e2e.test_web_admin import sign_in
from tests.e2e.test_web_customer import (  # noqa: F401
    PASSWORD,
    browser,
    create_plan,
    customer_page,
    new_page,
)

CATALOGUES = ROOT / "services" / "gateway" / "src" / "gateway" / "web" / "i18n"
TEMPLATES = ROOT / "services" / "gateway" / "src" / "gateway" / "web" / "templates"


def test_customer_cannot_open_admin_pages_or_other_customers_objects(
        browser, gateway_url, admin_client):  # noqa: F811
    plan = create_plan(admin_client)
    other = register(gateway_url)
    their_ticket = other.post("/tickets", json={"subject": "Private", "body": "mine"}) \
        .json()["ticket"]
    their_invoice = other.post("/invoices", json={"plan_id": plan["id"], "asset": "USDT",
                                                  "network": "TRON"},
                               headers={"Idempotency-Key": uuid.uuid4().hex}).json()["invoice"]
    page, me = customer_page(browser, gateway_url)
    try:
        expect(page.get_by_role("link", name="Admin panel")).to_have_count(0)
        for path in ["/admin/users", "/admin/tickets", "/admin/audit-log",
                     f"/admin/invoices/{their_invoice['id']}"]:
            response = page.goto(path)
            assert response.status == 403, path
            expect(page.get_by_role("heading", level=1)).to_have_text("You cannot open this page")
        for path in [f"/app/tickets/{their_ticket['id']}",
                     f"/app/invoices/{their_invoice['id']}", "/app/no-such-page"]:
            response = page.goto(path)
            assert response.status == 404, path
            expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")
            assert "Private" not in page.content()

        # a form whose CSRF token was removed (or never was there) is refused
        page.goto("/app/tickets/new")
        page.get_by_label("Subject").fill("Forged ticket")
        page.get_by_label("Message").fill("should not be created")
        page.evaluate("document.querySelector('main input[name=csrf_token]').remove()")
        page.get_by_role("button", name="Send").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("You cannot open this page")
        forged = page.request.post("/app/tickets", form={"subject": "Forged ticket",
                                                          "body": "no token",
                                                          "csrf_token": "0" * 64},
                                   max_redirects=0)
        assert forged.status == 403
        assert me.get("/tickets").json()["tickets"] == []

        # the JSON API keeps its own answers next to the pages
        assert httpx.get(f"{gateway_url}/api/v1/no-such-thing").json()["code"] == "NOT_FOUND"
        spec = httpx.get(f"{gateway_url}/api/v1/openapi.json").json()
        assert all(p.startswith("/api/v1/") for p in spec["paths"])
    finally:
        page.context.close()


def test_signed_out_visitor_is_sent_to_sign_in_and_back(browser, gateway_url):  # noqa: F811
    client = register(gateway_url)
    email = client.get("/auth/me").json()["user"]["email"]
    page = new_page(browser, gateway_url)
    try:
        page.goto("/app/tickets")
        expect(page).to_have_url(re.compile(r"/login\?next=%2Fapp%2Ftickets$"))
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill("wrong password 1")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_have_text("Wrong email or password.")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(re.compile(r"/app/tickets$"))

        # settings: a Telegram deep link, and a password change (checked against the old one)
        page.get_by_role("navigation", name="Your account").get_by_role(
            "link", name="Settings").click()
        page.get_by_role("button", name="Link Telegram").click()
        expect(page.get_by_test_id("telegram-link")).to_have_attribute(
            "href", re.compile(r"^https://t\.me/\w+\?start=[\w-]+$"))
        page.get_by_label("Current password").fill("not my password")
        page.get_by_label("New password").fill("a brand new password")
        page.get_by_role("button", name="Change password").click()
        expect(page.locator("#f-current_password-error")).to_have_text(
            "The current password is wrong.")
        page.get_by_label("Current password").fill(PASSWORD)
        page.get_by_label("New password").fill("a brand new password")
        page.get_by_role("button", name="Change password").click()
        expect(page.get_by_role("status")).to_contain_text("password was changed")

        page.get_by_role("region", name="Session").get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(re.compile(r"/$"))
        assert page.goto("/app").url.endswith("/login?next=%2Fapp")
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill("a brand new password")
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(re.compile(r"/app$"))
    finally:
        page.context.close()


def test_support_staff_see_only_the_support_queue(browser, gateway_url, admin_client):  # noqa: F811
    support = register(gateway_url)
    me = support.get("/auth/me").json()["user"]
    r = admin_client.put(f"/admin/users/{me['id']}/role", json={"role": "SUPPORT"})
    assert r.status_code == 200
    page = new_page(browser, gateway_url)
    try:
        sign_in(page, me["email"], PASSWORD)
        expect(page).to_have_url(re.compile(r"/admin/tickets$"))
        nav = page.get_by_role("navigation", name="Administration")
        expect(nav.get_by_role("link")).to_have_text(["Support queue"])
        assert page.goto("/admin/users").status == 403
        assert page.goto("/admin/system").status == 403
    finally:
        page.context.close()


def test_language_from_accept_language_and_the_switch(browser, gateway_url):  # noqa: F811
    page = new_page(browser, gateway_url, locale="ru-RU")
    try:
        page.goto("/")
        expect(page.locator("html")).to_have_attribute("lang", "ru")
        expect(page.get_by_role("link", name="Войти")).to_be_visible()
        page.get_by_role("navigation", name="Язык").get_by_role("link", name="English").click()
        expect(page.locator("html")).to_have_attribute("lang", "en")
        expect(page.get_by_role("link", name="Sign in")).to_be_visible()
        page.goto("/login")
        expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")  # cookie kept
    finally:
        page.context.close()


def test_catalogues_have_the_same_messages_and_cover_the_templates():
    en = json.loads((CATALOGUES / "en.json").read_text(encoding="utf-8"))
    ru = json.loads((CATALOGUES / "ru.json").read_text(encoding="utf-8"))
    assert set(en) == set(ru)
    placeholders = re.compile(r"\{(\w+)\}")
    for key in en:
        assert set(placeholders.findall(en[key])) == set(placeholders.findall(ru[key])), key
    used = set()
    for template in Path(TEMPLATES).rglob("*.html"):
        used |= set(re.findall(r"""\bt\(["']([a-z_]+\.[A-Za-z0-9_]+)["']\s*[,)]""",
                               template.read_text(encoding="utf-8")))
    assert used and used <= set(en), sorted(used - set(en))
