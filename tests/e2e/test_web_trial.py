"""The free trial in headless Chromium: a new customer starts it from the dashboard and sees it
active; the button is gone afterwards, and a second try is refused."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.test_web_customer import browser, customer_page  # noqa: F401


def test_a_customer_starts_the_free_trial_from_the_dashboard(browser, gateway_url):  # noqa: F811
    page, client = customer_page(browser, gateway_url)
    page.goto("/app")
    page.get_by_role("button", name="Start a free trial").click()
    # started, or (on a busy machine, past the trial's wait) still being set up
    expect(page.locator("p.flash")).to_have_text(re.compile(
        r"Your free trial (has started|is being set up; it will show here in a moment)\."))
    for _ in range(40):
        if page.get_by_test_id("subscription-status").count():
            break
        page.wait_for_timeout(250)
        page.reload()
    expect(page.get_by_test_id("subscription-status")).to_have_text("Active")
    # three days left: the renewal banner offers to buy a plan
    expect(page.get_by_test_id("renewal-banner")).to_be_visible()
    expect(page.get_by_text("Free trial", exact=True)).to_be_visible()
    expect(page.get_by_test_id("days-left")).to_have_text("3")
    expect(page.get_by_role("button", name="Start a free trial")).to_have_count(0)
    assert client.post("/trial").status_code == 409
    page.context.close()
