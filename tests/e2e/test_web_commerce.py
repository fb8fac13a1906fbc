"""One customer's commerce in headless Chromium, chained: the free trial, a plan bought with a
promo code (its price shown as it is typed, paid on the sandbox chain), a top-up, the plan bought
again from the balance. Each purchase extends the one subscription; the dashboard, the balance
page and the data (invoices, the code's use, the ledger, the grants) agree at the end."""

from __future__ import annotations

import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, timedelta
from decimal import Decimal
from itertools import pairwise

from playwright.sync_api import expect

from tests.conftest import sql, wait_for
from tests.e2e.test_web_customer import browser, create_plan, customer_page  # noqa: F401

INVOICE_URL = re.compile(r"/app/invoices/(\w+)$")


def rows(query: str, *args) -> list[dict]:
    """`sql` from another thread: Playwright's event loop runs in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(sql, query, *args).result()


def invoice_id(page) -> str:
    expect(page).to_have_url(INVOICE_URL)
    return INVOICE_URL.search(page.url).group(1)


def test_trial_then_a_promo_code_then_a_top_up_then_the_balance(browser, gateway_url,  # noqa: F811
                                                                 admin_client):
    plan = create_plan(admin_client, price="8.00")
    code = f"CHAIN{uuid.uuid4().hex[:6]}".upper()
    r = admin_client.post("/admin/promo-codes", json={"code": code, "kind": "PERCENT",
                                                      "value": "25", "max_uses": 1})
    assert r.status_code == 201, r.text
    page, client = customer_page(browser, gateway_url)
    user_id = client.get("/auth/me").json()["user"]["id"]
    account = page.get_by_role("navigation", name="Your account")

    # the free trial, from the dashboard
    page.goto("/app")
    expect(page.get_by_text("You have no subscription yet.")).to_be_visible()
    page.get_by_role("button", name="Start a free trial").click()
    # started, or (on a busy machine, past the trial's wait) still being set up
    expect(page.locator("p.flash")).to_have_text(re.compile(
        r"Your free trial (has started|is being set up; it will show here in a moment)\."))
    if not page.get_by_test_id("subscription-status").count():
        wait_for(lambda: client.get("/subscriptions").json()["subscriptions"],
                 message="the trial provisioned")
        page.reload()
    expect(page.get_by_test_id("subscription-status")).to_have_text("Active")
    expect(page.get_by_text("Free trial", exact=True)).to_be_visible()
    expect(page.get_by_test_id("days-left")).to_have_text("3")

    # renewing the trial: the plan, a promo code priced live, the invoice paid on the chain
    page.get_by_role("link", name="Renew", exact=True).click()
    page.get_by_role("link", name=f"Choose the {plan['name']} plan").click()
    page.get_by_label("Promo code (optional)").fill(code.lower())
    expect(page.get_by_test_id("promo-preview")).to_have_text("With this code: $6.00 (−$2.00)")
    page.get_by_label("USDT · TRON").check()
    page.get_by_role("button", name="Create invoice").click()
    promo_invoice = invoice_id(page)
    expect(page.get_by_text(f"{plan['name']} · $6.00 ·")).to_be_visible()
    expect(page.get_by_label("Amount (USDT)")).to_have_value(re.compile(r"^6(\.0+)?$"))
    page.get_by_role("button", name="Simulate payment").click()
    expect(page.get_by_test_id("subscription-active")).to_be_visible(timeout=60_000)
    expect(page.get_by_test_id("invoice-status")).to_have_text("Paid")
    account.get_by_role("link", name="Dashboard").click()
    expect(page.get_by_test_id("days-left")).to_have_text("33")  # the trial's 3, then 30
    expect(page.get_by_text(plan["name"], exact=True)).to_be_visible()

    # a top-up, paid on the chain like an invoice
    account.get_by_role("link", name="Balance").click()
    expect(page.get_by_test_id("balance")).to_have_text("$0.00")
    expect(page.get_by_text("No movements yet.")).to_be_visible()
    page.get_by_label("Amount, USD").fill("10")
    page.get_by_label("USDT · TRON").check()
    page.get_by_role("button", name="Create top-up invoice").click()
    top_up = invoice_id(page)
    expect(page.get_by_text("Balance top-up")).to_be_visible()
    page.get_by_role("button", name="Simulate payment").click()
    expect(page.get_by_test_id("top-up-credited")).to_be_visible(timeout=60_000)
    page.get_by_role("link", name="Open your balance").click()
    expect(page.get_by_test_id("balance")).to_have_text("$10.00")
    expect(page.locator("tr[data-entry='TOP_UP']")).to_contain_text("+$10.00")

    # renewing again, now the plan itself, paid from the balance at once
    account.get_by_role("link", name="Dashboard").click()
    page.get_by_role("link", name="Renew", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/app/buy/{plan['id']}$"))
    expect(page.get_by_test_id("promo-preview")).to_have_count(0)
    page.get_by_label("From my balance ($10.00)").check()
    page.get_by_role("button", name="Create invoice").click()
    from_balance = invoice_id(page)
    expect(page.get_by_test_id("invoice-status")).to_have_text("Paid")
    expect(page.get_by_test_id("payment-box")).to_have_count(0)

    # the subscription extended once more. Provisioning follows the payment, and the page cannot
    # tell from the subscription alone whether it holds this invoice's time yet (it already ran
    # past paid_at + 30 days), so the page is read again once the grant is applied.
    applied = wait_for(lambda: rows(
        "SELECT new_expires_at FROM provisioning.grants WHERE invoice_id = $1 AND "
        "applied_at IS NOT NULL", from_balance), message="the grant applied")
    until = applied[0]["new_expires_at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    page.reload()
    expect(page.get_by_test_id("subscription-active")).to_have_text(
        f"Your subscription is active until {until}.")
    account.get_by_role("link", name="Dashboard").click()
    expect(page.get_by_test_id("subscription-status")).to_have_text("Active")
    expect(page.get_by_test_id("days-left")).to_have_text("63")
    expect(page.locator("time").filter(has_text=until)).to_be_visible()
    expect(page.get_by_text("All subscriptions")).to_have_count(0)  # one subscription, extended
    account.get_by_role("link", name="Balance").click()
    expect(page.get_by_test_id("balance")).to_have_text("$2.00")
    entries = page.locator("tr[data-entry]")
    expect(entries).to_have_count(2)
    expect(entries.nth(0)).to_have_attribute("data-entry", "PURCHASE")  # newest first
    expect(entries.nth(0)).to_contain_text("−$8.00")
    expect(entries.nth(0)).to_contain_text("$2.00")
    expect(entries.nth(1)).to_have_attribute("data-entry", "TOP_UP")
    page.context.close()

    # the data behind the pages
    invoices = rows("SELECT id, kind, status, amount_usd, discount_usd, promo_code "
                   "FROM billing.invoices WHERE user_id = $1 ORDER BY created_at", user_id)
    assert [(i["kind"], i["status"], i["amount_usd"]) for i in invoices] == [
        ("TRIAL", "PAID", Decimal("0.00")), ("PLAN", "PAID", Decimal("6.00")),
        ("TOP_UP", "PAID", Decimal("10.00")), ("PLAN", "PAID", Decimal("8.00"))]
    assert [i["id"] for i in invoices[1:]] == [promo_invoice, top_up, from_balance]
    assert (invoices[1]["promo_code"], invoices[1]["discount_usd"]) == (code.lower(),
                                                                        Decimal("2.00"))
    assert invoices[3]["promo_code"] is None
    assert rows("SELECT status FROM billing.promo_redemptions WHERE invoice_id = $1",
               promo_invoice) == [{"status": "COUNTED"}]
    ledger = client.get("/balance").json()
    assert ledger["balance_usd"] == "2.00"
    assert [(e["kind"], e["amount_usd"], e["balance_after_usd"], e["invoice_id"])
            for e in ledger["entries"]] == [("PURCHASE", "-8.00", "2.00", from_balance),
                                            ("TOP_UP", "10.00", "10.00", top_up)]
    grants = rows("SELECT invoice_id, subscription_id, duration_days, previous_expires_at, "
                 "new_expires_at FROM provisioning.grants WHERE user_id = $1 "
                 "ORDER BY applied_at", user_id)
    assert [(g["invoice_id"], g["duration_days"]) for g in grants] == [
        (invoices[0]["id"], 3), (promo_invoice, 30), (from_balance, 30)]
    assert len({g["subscription_id"] for g in grants}) == 1
    for before, after in pairwise(grants):  # each one extends the one before
        assert after["previous_expires_at"] == before["new_expires_at"]
        assert after["new_expires_at"] - after["previous_expires_at"] == timedelta(days=30)
    subscriptions = client.get("/subscriptions").json()["subscriptions"]
    assert [(s["id"], s["plan_id"], s["status"]) for s in subscriptions] == [
        (grants[0]["subscription_id"], plan["id"], "ACTIVE")]
