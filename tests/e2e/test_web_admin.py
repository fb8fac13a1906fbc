"""The admin panel in headless Chromium: block a user, answer a ticket, manage plans, refund an
invoice, extend a subscription, and find each action on the audit log page."""

from __future__ import annotations

import re
import uuid

import httpx
from playwright.sync_api import Page, expect

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, register, unique_email, wait_for
from tests.e2e.test_web_customer import browser, create_plan, new_page  # noqa: F401


def sign_in(page: Page, email: str, password: str) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def paid_subscription(client: httpx.Client, plan: dict) -> tuple[dict, dict]:
    """A customer's invoice paid on the sandbox chain, and the subscription it bought."""
    r = client.post("/invoices", json={"plan_id": plan["id"], "asset": "USDT", "network": "TRON"},
                    headers={"Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 201, r.text
    invoice = r.json()["invoice"]
    r = client.post("/sandbox/transfers", json={
        "address": invoice["address"], "amount_asset": invoice["amount_asset"],
        "asset": "USDT", "network": "TRON"})
    assert r.status_code == 201, r.text
    assert client.post("/sandbox/blocks", json={"count": 3}).status_code == 200

    def active():
        subs = [s for s in client.get("/subscriptions").json()["subscriptions"]
                if s["status"] == "ACTIVE"]
        paid = client.get(f"/invoices/{invoice['id']}").json()["invoice"]["status"] == "PAID"
        return subs[0] if subs and paid else None

    return invoice, wait_for(active, timeout=60, interval=0.3, message="paid and provisioned")


def audit_row(page: Page, action: str, target: str):
    return page.locator(f'tr[data-action="{action}"][data-target="{target}"]')


def test_admin_blocks_answers_manages_plans_refunds_extends_and_audits(
        browser, gateway_url, admin_client):  # noqa: F811
    victim_email = unique_email("victim")
    victim = register(gateway_url, victim_email)
    victim_id = victim.get("/auth/me").json()["user"]["id"]
    customer = register(gateway_url)
    subject = f"Refund please {uuid.uuid4().hex[:6]}"
    ticket = customer.post("/tickets", json={"subject": subject,
                                             "body": "I was charged twice"}).json()["ticket"]
    plan = create_plan(admin_client, price="3.00", days=30)
    invoice, subscription = paid_subscription(customer, plan)

    page = new_page(browser, gateway_url)
    try:
        sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
        admin_nav = page.get_by_role("navigation", name="Administration")
        for item in ["Users", "Plans", "Invoices", "Subscriptions", "Support queue", "Audit log",
                     "System"]:
            expect(admin_nav.get_by_role("link", name=item)).to_be_visible()

        # block a user (an admin lands on the dashboard)
        admin_nav.get_by_role("link", name="Users").click()
        page.get_by_label("Email or id").fill(victim_email)
        page.get_by_role("button", name="Search").click()
        row = page.locator(f'tr[data-user="{victim_email}"]')
        row.get_by_role("button", name="Block").click()
        expect(page.get_by_role("status")).to_contain_text("blocked")
        expect(row.get_by_text("Blocked", exact=True)).to_be_visible()
        assert victim.get("/auth/me").status_code == 401

        # answer and close a ticket from the support queue
        admin_nav.get_by_role("link", name="Support queue").click()
        page.get_by_role("navigation", name="Tickets by status").get_by_role(
            "link", name="Open").click()
        page.get_by_role("link", name=subject).click()
        page.get_by_role("button", name="Send answer").click()
        expect(page.locator("#f-body-error")).to_have_text("This field is required.")
        page.get_by_label("Message").fill("We are looking into it")
        page.get_by_role("button", name="Send answer").click()
        expect(page.get_by_role("status")).to_contain_text("answer was sent")
        expect(page.get_by_test_id("message").filter(has_text="We are looking into it")) \
            .to_be_visible()
        page.get_by_role("button", name="Close ticket").click()
        expect(page.get_by_test_id("ticket-status")).to_have_text("Closed")
        seen = customer.get(f"/tickets/{ticket['id']}").json()["ticket"]
        assert [(m["author_role"], m["origin"]) for m in seen["messages"]][-1] == \
            ("SUPPORT", "ADMIN")
        assert seen["status"] == "CLOSED"

        # plans: create (with a validation error first), edit, deactivate
        admin_nav.get_by_role("link", name="Plans").click()
        page.get_by_role("button", name="Create plan").click()
        expect(page.locator("#f-name-error")).to_have_text("This field is required.")
        name = f"Panel plan {uuid.uuid4().hex[:6]}"
        page.get_by_label("Name").fill(name)
        page.get_by_label("Price (USD)").fill("7.5")
        page.get_by_label("Duration (days)").fill("90")
        page.get_by_label("Devices").fill("5")
        page.get_by_role("button", name="Create plan").click()
        expect(page.get_by_role("status")).to_contain_text("plan was created")
        plan_row = page.locator(f'tr[data-plan="{name}"]')
        plan_row.get_by_role("link", name="Edit").click()
        page.get_by_label("Price (USD)").fill("8.25")
        page.get_by_role("button", name="Save").click()
        expect(plan_row).to_contain_text("$8.25")
        plan_row.get_by_role("button", name="Deactivate").click()
        expect(plan_row.get_by_text("Off sale")).to_be_visible()
        assert name not in [p["name"] for p in httpx.get(f"{gateway_url}/api/v1/plans")
                            .json()["plans"]]

        # extend the customer's subscription by 10 days
        admin_nav.get_by_role("link", name="Subscriptions").click()
        sub_row = page.locator(f'tr[data-subscription="{subscription["id"]}"]')
        before = sub_row.get_by_test_id("expires").inner_text()
        sub_row.get_by_label("Days").fill("0")
        sub_row.get_by_role("button", name="Extend").click()
        expect(sub_row.locator(".error")).to_have_text("Must be at least 1.")
        sub_row.get_by_label("Days").fill("10")
        sub_row.get_by_role("button", name="Extend").click()
        expect(page.get_by_role("status")).to_contain_text("extended")
        expect(sub_row.get_by_test_id("expires")).not_to_have_text(before)
        after = customer.get("/subscriptions").json()["subscriptions"][0]["expires_at"]
        assert after > subscription["expires_at"]

        # refund the invoice, with a reason
        admin_nav.get_by_role("link", name="Invoices").click()
        page.get_by_label("Status").select_option("PAID")
        page.get_by_role("button", name="Filter").click()
        expect(page).to_have_url(re.compile(r"status=PAID"))
        page.locator(f'tr[data-invoice="{invoice["id"]}"]').get_by_role("link").click()
        page.get_by_label("Reason").fill("Charged twice, refunded by support")
        page.get_by_role("button", name="Refund").click()
        expect(page.get_by_test_id("invoice-status")).to_have_text("Refunded")
        assert customer.get(f"/invoices/{invoice['id']}").json()["invoice"]["status"] == \
            "REFUNDED"

        # every action is on the audit log page
        admin_nav.get_by_role("link", name="Audit log").click()
        for action, target in [("user.block", victim_id), ("ticket.answer", ticket["id"]),
                               ("ticket.close", ticket["id"]),
                               ("subscription.extend", subscription["id"]),
                               ("invoice.refund", invoice["id"])]:
            expect(audit_row(page, action, target).first).to_contain_text("success")
        expect(page.locator('tr[data-action="plan.create"]').first).to_contain_text("success")
        expect(page.locator('tr[data-action="plan.update"]').first).to_contain_text("success")

        # the system page shows each service's readiness and the job queues
        admin_nav.get_by_role("link", name="System").click()
        for service in ["gateway", "billing", "provisioner", "tickets", "telegram"]:
            expect(page.locator(f'tr[data-service="{service}"]')).to_contain_text("Ready")
        expect(page.locator("tr[data-queue]").first).to_be_visible()  # job queue depths
    finally:
        page.context.close()


def test_panel_refuses_an_admin_locking_themself_out(gateway_url, admin_client):
    """Same rule as the API (one place in the service layer): 409 pages, nothing changed; the
    users page offers no role or block control on the admin's own row."""
    me = admin_client.get("/auth/me").json()["user"]
    web = httpx.Client(base_url=gateway_url, timeout=15,
                       cookies={"sid": admin_client.cookies["sid"]})
    users = web.get("/admin/users", params={"q": ADMIN_EMAIL})
    assert users.status_code == 200
    assert f"/admin/users/{me['id']}/block" not in users.text
    assert f"/admin/users/{me['id']}/role" not in users.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', users.text).group(1)
    for path, data in [(f"/admin/users/{me['id']}/block", {}),
                       (f"/admin/users/{me['id']}/role", {"role": "USER"})]:
        r = web.post(path, data={**data, "csrf_token": token})
        assert r.status_code == 409, (path, r.status_code)
        assert "yourself" in r.text or "your own role" in r.text
    assert admin_client.get("/auth/me").json()["user"]["role"] == "ADMIN"
