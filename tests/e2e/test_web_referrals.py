"""Referrals in headless Chromium: a customer finds their link on "Invite friends", a visitor
opens it, signs up (the code goes with the form), buys and pays on the sandbox chain, and the
referrer's page then counts them and shows the reward; in Russian too."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.conftest import test_env, unique_email, wait_for
from tests.e2e.test_web_customer import browser, create_plan, customer_page, new_page  # noqa: F401


def test_a_friend_opens_the_link_signs_up_and_pays_and_the_page_counts_them(
        browser, gateway_url, admin_client):  # noqa: F811
    plan = create_plan(admin_client, price="4.99")
    page, client = customer_page(browser, gateway_url)
    page.goto("/app")
    page.get_by_role("navigation", name="Your account").get_by_role(
        "link", name="Invite friends").click()
    expect(page).to_have_url(re.compile(r"/app/referrals$"))
    code = page.get_by_test_id("referral-code").inner_text()
    link = f"{test_env()['APP_BASE_URL']}/r/{code}"
    expect(page.get_by_label("Your invitation link")).to_have_value(link)
    expect(page.get_by_role("button", name="Copy")).to_be_visible()
    expect(page.get_by_test_id("referrals-invited")).to_have_text("0")
    expect(page.get_by_test_id("referrals-paid")).to_have_text("0")

    # the friend: the link leads to sign-up, which carries the code
    friend = new_page(browser, gateway_url)
    friend.goto(f"/r/{code.upper()}")
    expect(friend).to_have_url(re.compile(r"/register$"))
    expect(friend.get_by_test_id("referral-note")).to_be_visible()
    email = unique_email("invited")
    friend.get_by_label("Email").fill(email)
    friend.get_by_label("Password").fill("correct horse 1")
    friend.get_by_role("button", name="Create account").click()
    expect(friend).to_have_url(re.compile(r"/app$"))
    wait_for(lambda: client.get("/referrals").json()["invited"] == 1,
             message="the referral recorded")
    assert not any(c["name"].endswith("ref") for c in friend.context.cookies())  # used: gone

    friend.goto(f"/app/buy/{plan['id']}")
    friend.get_by_label("USDT · TRON").check()
    friend.get_by_role("button", name="Create invoice").click()
    friend.get_by_role("button", name="Simulate payment").click()
    expect(friend.get_by_test_id("invoice-status")).to_have_text("Paid", timeout=60_000)
    friend.context.close()

    wait_for(lambda: client.get("/referrals").json()["paid"] == 1, message="the reward")
    page.reload()
    expect(page.get_by_test_id("referrals-invited")).to_have_text("1")
    expect(page.get_by_test_id("referrals-paid")).to_have_text("1")
    expect(page.get_by_test_id("referrals-reward-usd")).to_have_text("$0.50")  # 10 % of 4.99

    page.goto("/lang/ru?next=/app/referrals")
    expect(page.get_by_role("heading", name="Пригласить друзей")).to_be_visible()
    expect(page.get_by_label("Ваша ссылка-приглашение")).to_have_value(link)
    page.goto("/lang/en?next=/app")
    page.context.close()
