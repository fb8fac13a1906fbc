"""The web site in headless Chromium: a visitor registers, gets support, buys and gets access.

Also home of the browser fixtures the other `test_web_*` modules import. Chromium is Debian's
(`/usr/bin/chromium`, installed by `make setup`); Playwright only drives it (never
`playwright install`). Everything waits with Playwright's `expect` deadlines, never sleeps.
"""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import ROOT, register, unique_email
from tests.e2e.test_support_flow import operator_says, topic_of

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
PASSWORD = "correct horse 1"
SHOTS = ROOT / ".run" / "test-logs"

expect.set_options(timeout=20_000)


@pytest.fixture(scope="session")
def browser(stack, request) -> Browser:
    """One Chromium for the whole run.

    Defined once here but imported by the other `test_web_*` modules, which makes pytest hold
    one fixture per module: they share the browser through the session, because Playwright's
    sync API allows one instance per thread. It keeps an event loop running in this thread, so
    it starts after `stack` (whose setup calls asyncio.run()).
    """
    shared = getattr(request.session, "web_browser", None)
    if shared is None:
        playwright = sync_playwright().start()
        shared = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        request.session.web_browser = shared

        def stop() -> None:
            shared.close()
            playwright.stop()

        request.addfinalizer(stop)
    return shared


def new_page(browser: Browser, gateway_url: str, *, cookie: str | None = None,
             viewport: dict | None = None, locale: str = "en-US") -> Page:
    """A fresh browser profile, optionally already signed in with a session cookie."""
    context = browser.new_context(base_url=gateway_url, locale=locale,
                                  viewport=viewport or {"width": 1280, "height": 900})
    if cookie:
        context.add_cookies([{"name": "sid", "value": cookie, "url": gateway_url}])
    page = context.new_page()
    page.set_default_timeout(20_000)
    return page


@pytest.fixture
def page(browser, gateway_url):
    p = new_page(browser, gateway_url)
    yield p
    p.context.close()


def customer_page(browser: Browser, gateway_url: str, **kwargs) -> tuple[Page, object]:
    """A page signed in as a new customer (registered over the API), and that customer's client."""
    client = register(gateway_url)
    return new_page(browser, gateway_url, cookie=client.cookies["sid"], **kwargs), client


def create_plan(admin_client, name: str | None = None, price: str = "4.99", days: int = 30) -> dict:
    r = admin_client.post("/admin/plans", json={
        "name": name or f"Web plan {uuid.uuid4().hex[:6]}", "price_usd": price,
        "duration_days": days, "max_devices": 3, "description": "For the browser tests"})
    assert r.status_code == 201, r.text
    return r.json()["plan"]


def no_horizontal_overflow(page: Page) -> int:
    return page.evaluate("document.scrollingElement.scrollWidth")


def test_visitor_registers_gets_support_buys_and_gets_access(browser, gateway_url, emulator_url,
                                                             admin_client, page):
    plan = create_plan(admin_client)
    email = unique_email("web")

    # landing page: the plan with its price, then registration
    page.goto("/")
    expect(page.get_by_role("heading", name=plan["name"])).to_be_visible()
    expect(page.get_by_text("$4.99").first).to_be_visible()
    page.get_by_role("link", name="Create account").click()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("short")
    page.get_by_role("button", name="Create account").click()
    expect(page.locator("#f-password-error")).to_contain_text("at least 10")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/app$"))
    expect(page.get_by_text("You have no subscription yet.")).to_be_visible()

    # a ticket, answered by an operator in the Telegram support chat
    page.get_by_role("navigation", name="Your account").get_by_role("link", name="Support").click()
    page.get_by_role("link", name="New ticket").click()
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#f-subject-error")).to_have_text("This field is required.")
    page.get_by_label("Subject").fill("Cannot connect from the web")
    page.get_by_label("Message").fill("The handshake times out on my laptop")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status")).to_contain_text("Your ticket is open")
    ticket_id = re.search(r"/app/tickets/(\w+)", page.url).group(1)
    expect(page.get_by_test_id("message")).to_have_count(1)

    thread = topic_of(emulator_url, ticket_id)
    operator_says(emulator_url, thread, "Please update the app and try again")
    reply = page.get_by_test_id("message").filter(has_text="Please update the app")
    expect(reply).to_be_visible()  # arrives by htmx polling, no reload
    expect(reply).to_contain_text("Support")
    expect(page.get_by_test_id("ticket-status")).to_have_text("Answered")
    page.get_by_label("Message").fill("Thanks, it works now")
    page.get_by_role("button", name="Send reply").click()
    expect(page.get_by_test_id("message")).to_have_count(3)
    expect(page.get_by_test_id("ticket-status")).to_have_text("Waiting for support")

    # buy: plan → asset/network → invoice → simulated payment → active, without a reload
    page.get_by_role("link", name="Buy", exact=True).click()
    page.get_by_role("link", name=f"Choose the {plan['name']} plan").click()
    page.get_by_label("USDT · TRON").check()
    page.get_by_role("button", name="Create invoice").click()
    expect(page).to_have_url(re.compile(r"/app/invoices/\w+$"))
    expect(page.get_by_test_id("invoice-status")).to_have_text("Awaiting payment")
    expect(page.get_by_label("Amount (USDT)")).to_have_value(re.compile(r"^4\.99"))
    expect(page.get_by_label("Address (TRON)")).to_have_value(re.compile(r"^T\w+"))
    expect(page.locator("figure svg.qr")).to_be_visible()
    expect(page.locator("time[data-countdown]")).to_have_text(re.compile(r"^1?\d:\d\d$"))
    expect(page.get_by_role("button", name="Cancel invoice")).to_be_visible()
    page.evaluate("window.__sameDocument = true")
    page.get_by_role("button", name="Simulate payment").click()
    expect(page.get_by_test_id("subscription-active")).to_be_visible(timeout=60_000)
    expect(page.get_by_test_id("invoice-status")).to_have_text("Paid")
    assert page.evaluate("window.__sameDocument") is True
    # paid: the result and the payments, no payment box (live, and after a reload)
    for _ in range(2):
        expect(page.get_by_test_id("payments")).to_contain_text("USDT")
        expect(page.get_by_test_id("payment-box")).to_have_count(0)
        expect(page.get_by_label("Amount (USDT)")).to_have_count(0)
        expect(page.locator("time[data-countdown], figure svg.qr")).to_have_count(0)
        expect(page.get_by_role("button", name="Cancel invoice")).to_have_count(0)
        page.reload()
    expect(page.get_by_test_id("subscription-active")).to_be_visible()

    page.get_by_role("link", name="Open your access page").click()
    link = page.get_by_label(re.compile("Subscription link"))
    expect(link).to_have_value(re.compile(r"^https?://.+/api/v1/sub/[\w-]{43}$"))
    expect(page.locator("figure svg.qr")).to_be_visible()
    # Chromium here says Linux: its apps' import buttons are shown, the others folded away
    expect(page.locator('a[data-app="hiddify"]').first).to_be_visible()
    expect(page.locator('a[data-app="streisand"]')).to_be_hidden()
    expect(page.get_by_label(re.compile("Access URL"))).to_have_value(re.compile(r"\w+://"))
    page.get_by_role("button", name="Copy").first.click()
    page.get_by_role("link", name="Dashboard").first.click()
    expect(page.get_by_test_id("subscription-status")).to_have_text("Active")
    expect(page.get_by_test_id("days-left")).to_have_text("30")

    page.get_by_role("link", name="Invoices").click()
    expect(page.get_by_role("cell", name=plan["name"])).to_be_visible()


def test_api_docs_render_under_the_products_csp(page, gateway_url):
    """Swagger UI from the gateway's own copy: operations listed, nothing refused, no CDN."""
    console, elsewhere = [], []
    page.on("console", lambda msg: console.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: console.append(str(exc)))
    page.on("request", lambda req: None if req.url.startswith(gateway_url)
            else elsewhere.append(req.url))
    response = page.goto("/api/v1/docs")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert "<script>" not in response.text()
    ops = page.locator(".opblock-summary-path")
    expect(ops.filter(has_text=re.compile(r"^/api/v1/tickets$")).first).to_be_visible()
    assert ops.count() > 30
    page.locator(".opblock-summary", has_text="/api/v1/plans").first.click()
    expect(page.get_by_role("button", name="Try it out").first).to_be_visible()
    assert not console, console
    assert not elsewhere, elsewhere


@pytest.mark.parametrize("label,width,height", [("phone", 390, 844), ("desktop", 1280, 800)])
def test_main_pages_fit_the_screen(browser, gateway_url, admin_client, label, width, height):
    """Screenshots of the main pages at phone and desktop widths (test artifacts), no overflow."""
    plan = create_plan(admin_client)
    page, client = customer_page(browser, gateway_url, viewport={"width": width, "height": height})
    try:
        client.post("/tickets", json={"subject": "A rather long subject line " * 3,
                                      "body": "x" * 300})
        invoice = client.post("/invoices", json={"plan_id": plan["id"], "asset": "USDT",
                                                 "network": "TRON"},
                              headers={"Idempotency-Key": uuid.uuid4().hex})
        assert invoice.status_code == 201, invoice.text
        SHOTS.mkdir(parents=True, exist_ok=True)
        for name, path in [("landing", "/"), ("dashboard", "/app"),
                           ("invoice", f"/app/invoices/{invoice.json()['invoice']['id']}"),
                           ("tickets", "/app/tickets"), ("settings", "/app/settings")]:
            page.goto(path)
            expect(page.locator("main h1")).to_be_visible()
            shot = SHOTS / f"web-{label}-{name}.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 0
            assert no_horizontal_overflow(page) <= width, name
    finally:
        page.context.close()
