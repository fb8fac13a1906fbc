"""Promo codes in headless Chromium: an admin creates one on the promo page, a customer sees the
price with it as they type and buys with it; a used-up code is refused with its reason."""

from __future__ import annotations

import re
import uuid

from playwright.sync_api import expect

from tests.e2e.test_web_customer import browser, create_plan, customer_page, new_page  # noqa: F401


def test_admin_creates_a_code_and_a_customer_buys_with_it(browser, gateway_url,  # noqa: F811
                                                          admin_client):
    plan = create_plan(admin_client, price="8.00")
    code = f"WEB{uuid.uuid4().hex[:6]}".upper()

    admin = new_page(browser, gateway_url, cookie=admin_client.cookies["sid"])
    admin.goto("/admin")
    admin.get_by_role("link", name="Promo codes").click()
    admin.get_by_label("Code", exact=True).fill(code)
    admin.get_by_label("Kind").select_option("PERCENT")
    admin.get_by_label("Value").fill("150")
    admin.get_by_role("button", name="Create promo code").click()
    expect(admin.locator("p.error").first).to_be_visible()  # over 100 %: refused
    admin.get_by_label("Code", exact=True).fill(code)
    admin.get_by_label("Value").fill("25")
    admin.get_by_label("Uses in all (empty: no limit)").fill("1")
    admin.get_by_role("button", name="Create promo code").click()
    expect(admin.get_by_role("status")).to_contain_text("created")
    row = admin.locator(f"tr[data-code='{code.lower()}']")
    expect(row).to_contain_text("25 % off")
    expect(row).to_contain_text("0 reserved, 0 paid, of 1")

    page, _ = customer_page(browser, gateway_url)
    page.goto(f"/app/buy/{plan['id']}")
    page.get_by_label("Promo code (optional)").fill("NOPE-NOPE")
    expect(page.get_by_test_id("promo-preview")).to_have_text("There is no such promo code.")
    page.get_by_label("Promo code (optional)").fill(code.lower())
    expect(page.get_by_test_id("promo-preview")).to_have_text("With this code: $6.00 (−$2.00)")
    page.get_by_label("USDT · TRON").check()
    page.get_by_role("button", name="Create invoice").click()
    expect(page).to_have_url(re.compile(r"/app/invoices/\w+$"))
    expect(page.get_by_label("Amount (USDT)")).to_have_value(re.compile(r"^6(\.0+)?$"))

    other, _ = customer_page(browser, gateway_url)  # the one use is reserved
    other.goto(f"/app/buy/{plan['id']}")
    other.get_by_label("Promo code (optional)").fill(code)
    other.get_by_label("USDT · TRON").check()
    other.get_by_role("button", name="Create invoice").click()
    expect(other.locator("#f-promo_code-error")).to_have_text("This promo code has been used up.")

    admin.reload()
    expect(row).to_contain_text("1 reserved, 0 paid, of 1")
    row.get_by_role("button", name="Deactivate").click()
    expect(admin.get_by_role("status")).to_contain_text("deactivated")
    for p in (admin, page, other):
        p.context.close()
