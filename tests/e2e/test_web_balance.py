"""The balance in headless Chromium: a customer tops up (paid on the sandbox chain), buys a plan
from the balance, and an admin adjusts it; the ledger shows each movement once."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.test_web_customer import browser, create_plan, customer_page, new_page  # noqa: F401


def test_top_up_then_buy_from_the_balance_then_an_admin_adjusts(browser, gateway_url,  # noqa: F811
                                                                 admin_client):
    plan = create_plan(admin_client, price="4.99")
    page, client = customer_page(browser, gateway_url)
    user_id = client.get("/auth/me").json()["user"]["id"]

    # top up: the form refuses what is out of bounds, then an invoice paid like any other
    page.goto("/app")
    page.get_by_role("navigation", name="Your account").get_by_role("link", name="Balance").click()
    expect(page.get_by_test_id("balance")).to_have_text("$0.00")
    page.get_by_label("Amount, USD").fill("0.50")
    page.get_by_role("button", name="Create top-up invoice").click()
    expect(page.locator("#f-amount_usd-error")).not_to_be_empty()
    page.get_by_label("Amount, USD").fill("6")
    page.get_by_label("USDT · TRON").check()
    page.get_by_role("button", name="Create top-up invoice").click()
    expect(page).to_have_url(re.compile(r"/app/invoices/\w+$"))
    expect(page.get_by_text("Balance top-up")).to_be_visible()
    page.get_by_role("button", name="Simulate payment").click()
    expect(page.get_by_test_id("top-up-credited")).to_be_visible(timeout=60_000)
    page.get_by_role("link", name="Open your balance").click()
    expect(page.get_by_test_id("balance")).to_have_text("$6.00")

    # buy from the balance: paid at once, access granted as for any payment
    page.goto(f"/app/buy/{plan['id']}")
    page.get_by_label("From my balance ($6.00)").check()
    page.get_by_role("button", name="Create invoice").click()
    expect(page).to_have_url(re.compile(r"/app/invoices/\w+$"))
    expect(page.get_by_test_id("invoice-status")).to_have_text("Paid")
    expect(page.get_by_test_id("subscription-active")).to_be_visible(timeout=60_000)
    page.goto(f"/app/buy/{plan['id']}")  # $1.01 left: not enough for another
    page.get_by_label("From my balance ($1.01)").check()
    page.get_by_role("button", name="Create invoice").click()
    expect(page.locator("#option-error")).to_contain_text("does not cover")
    page.goto("/app/balance")
    expect(page.locator("tr[data-entry]")).to_have_count(2)
    expect(page.locator("tr[data-entry='PURCHASE']")).to_contain_text("−$4.99")

    # the admin's page of that customer: an adjustment, once, never below zero
    admin = new_page(browser, gateway_url, cookie=admin_client.cookies["sid"])
    admin.goto(f"/admin/users/{user_id}/balance")
    expect(admin.get_by_test_id("balance")).to_have_text("$1.01")
    admin.get_by_label(re.compile("^Amount, USD")).fill("-2")
    admin.get_by_label("Note (why)").fill("too much")
    admin.get_by_role("button", name="Apply adjustment").click()
    expect(admin.locator("#f-amount_usd-error")).to_contain_text("does not cover")
    admin.get_by_label(re.compile("^Amount, USD")).fill("-1.01")
    admin.get_by_label("Note (why)").fill("test adjustment")
    admin.get_by_role("button", name="Apply adjustment").click()
    expect(admin.get_by_role("status")).to_contain_text("adjusted")
    expect(admin.get_by_test_id("balance")).to_have_text("$0.00")
    expect(admin.locator("tr[data-entry='ADJUSTMENT']")).to_contain_text("test adjustment")
    admin.context.close()
    page.reload()
    expect(page.get_by_test_id("balance")).to_have_text("$0.00")
    expect(page.locator("tr[data-entry]")).to_have_count(3)
    page.context.close()
