"""The KPIs over the whole stack: a known history in each service's own schema (a week of June
2003, which no other test reaches), `GET /api/v1/admin/kpis` and its CSV checked figure by
figure, and the admin dashboard's cards and SVG charts showing the same values in Chromium, in
both languages and on a phone."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import asyncpg
from playwright.sync_api import expect

from tests.conftest import ADMIN_DSN, ADMIN_EMAIL, ADMIN_PASSWORD, register
from tests.e2e.test_web_admin import sign_in
from tests.e2e.test_web_customer import browser, new_page, no_horizontal_overflow  # noqa: F401

RANGE = {"from": "2003-06-02", "to": "2003-06-08"}
DAYS = [f"2003-06-0{d}" for d in range(2, 9)]


def ts(day: int, hour: int = 0, minute: int = 0, month: int = 6) -> str:
    return f"2003-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:00+00:00"


async def _insert_history() -> None:
    """Billing: A takes a trial on the 2nd, pays on the 3rd (new, converted) and renews on
    the 5th; B pays on the 3rd, refunded on the 4th; C paid in May and pays again on the 6th.
    Provisioner: A's first period ends on the 5th after the renewal was applied; B's grant is
    refunded; C's May period runs out on the 4th (churn) and is bought again on the 6th; D's
    paid grant on the 7th failed. Tickets: answered after 10 min, 30 min and 2 h; one never."""
    tag = uuid.uuid4().hex[:6]
    a, b, c, d = (f"kpi-{n}-{tag}" for n in "abcd")
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        if await conn.fetchval("SELECT count(*) FROM billing.invoices "
                               "WHERE paid_at < '2004-01-01'"):
            return  # inserted by an earlier run on this stack
        plan = await conn.fetchval("SELECT id FROM billing.plans LIMIT 1")

        async def invoice(user, kind, amount, paid, refunded=None):
            paid_at = datetime.fromisoformat(paid)
            refunded_at = datetime.fromisoformat(refunded) if refunded else None
            invoice_id = uuid.uuid4().hex
            await conn.execute(
                """INSERT INTO billing.invoices (id, user_id, kind, plan_id, status, amount_usd,
                   asset, network, rate_usd, amount_asset, provider, rate_locked_until,
                   created_at, updated_at, paid_at, refunded_at, amount_received_asset,
                   overpaid_asset, underpaid_asset, late_amount_asset, needs_review,
                   renewal_key, subscription_id)
                   VALUES ($1, $2, $3, $4, $5, $6, 'USDT', 'TRON', 1, $6, 'sandbox', $7, $7, $7,
                   $7, $8, $6, 0, 0, 0, false, $9, $10)""",
                invoice_id, user, kind, None if kind == "TRIAL" else plan,
                "REFUNDED" if refunded else "PAID", amount, paid_at, refunded_at,
                invoice_id if kind == "RENEWAL" else None,
                "sub" if kind == "RENEWAL" else None)
            return invoice_id

        trial = await invoice(a, "TRIAL", 0, ts(2, 10))
        await conn.execute("INSERT INTO billing.trials (user_id, invoice_id, created_at) "
                           "VALUES ($1, $2, $3)", a, trial, _dt(ts(2, 10)))
        await invoice(a, "PLAN", 10, ts(3, 12))
        await invoice(a, "RENEWAL", 10, ts(5, 9))
        await invoice(b, "PLAN", 5.5, ts(3, 15), refunded=ts(4, 8))
        await invoice(c, "PLAN", 10, ts(10, 12, month=5))
        await invoice(c, "PLAN", 7.25, ts(6, 10))

        async def grant(user, sub, status, created, applied, expires):
            await conn.execute(
                """INSERT INTO provisioning.grants (invoice_id, kind, user_id, subscription_id,
                   plan_id, plan, duration_days, max_devices, status, attempts, created_at,
                   updated_at, applied_at, new_expires_at)
                   VALUES ($1, 'INVOICE', $2, $3, 'plan', '{}'::jsonb, 30, 1, $4, 1, $5, $5, $6,
                   $7)""",
                uuid.uuid4().hex, user, sub, status, _dt(created),
                _dt(applied) if applied else None, _dt(expires) if expires else None)

        await grant(a, f"s-{a}", "APPLIED", ts(3, 12), ts(3, 12), ts(5, 12))
        await grant(a, f"s-{a}", "APPLIED", ts(5, 9), ts(5, 9), ts(12, 12))
        await grant(b, f"s-{b}", "REFUNDED", ts(3, 15), ts(3, 15), ts(3, 15, month=7))
        await grant(c, f"s-{c}", "APPLIED", ts(10, 12, month=5), ts(10, 12, month=5), ts(4, 6))
        await grant(c, f"s-{c}", "APPLIED", ts(6, 10), ts(6, 10), ts(6, 10, month=7))
        await grant(d, None, "FAILED", ts(7, 10), None, None)

        async def ticket(opened, answered_after_s=None, closed=None, rating=None):
            ticket_id = uuid.uuid4().hex
            await conn.execute(
                """INSERT INTO tickets.tickets (id, user_id, subject, status, source, seq,
                   created_at, last_message_at, closed_at, rating, rated_at)
                   VALUES ($1, $2, 'Help', $3, 'WEB', 0, $4, $4, $5, $6,
                           $5::timestamptz + interval '1 hour')""",
                ticket_id, a, "CLOSED" if closed else "OPEN", _dt(opened),
                _dt(closed) if closed else None, rating)
            await conn.execute(
                """INSERT INTO tickets.messages (id, ticket_id, author_role, origin, body,
                   created_at) VALUES ($1, $2, 'USER', 'WEB', 'It does not connect', $3)""",
                uuid.uuid4().hex, ticket_id, _dt(opened))
            if answered_after_s is not None:
                await conn.execute(
                    """INSERT INTO tickets.messages (id, ticket_id, author_role, origin, body,
                       created_at) VALUES ($1, $2, 'SUPPORT', 'ADMIN', 'Try this',
                       $3::timestamptz + make_interval(secs => $4))""",
                    uuid.uuid4().hex, ticket_id, _dt(opened), answered_after_s)

        await ticket(ts(2, 9), 600)
        await ticket(ts(2, 10), 1800, closed=ts(3, 12), rating=5)
        await ticket(ts(3, 8), 7200, closed=ts(4, 8), rating=2)
        await ticket(ts(4, 9))
    finally:
        await conn.close()


def _dt(value: str) -> datetime:
    return datetime.fromisoformat(value)


def row(period, **figures):
    return {"period": period, "revenue_usd": "0.00", "paid_invoices": 0, "new_customers": 0,
            "trials": 0, "trial_conversions": 0, "renewals": 0, "renewal_rate": None,
            "refunds": 0, "refund_rate": None, "churned": 0, "active_subscriptions": 0,
            "paid_to_active_ok_pct": None, "median_first_response_s": None, "open_tickets": 2,
            "csat_ratings": 0, "csat_avg": None, **figures}


EXPECTED = [
    row("2003-06-02", trials=1, active_subscriptions=1, median_first_response_s=1200),
    row("2003-06-03", revenue_usd="15.50", paid_invoices=2, new_customers=2,
        trial_conversions=1, refund_rate=0.0, active_subscriptions=2,
        paid_to_active_ok_pct=100.0, median_first_response_s=7200, csat_ratings=1,
        csat_avg=5.0),
    row("2003-06-04", refunds=1, churned=1, renewal_rate=0.0, active_subscriptions=1,
        csat_ratings=1, csat_avg=2.0),
    row("2003-06-05", revenue_usd="10.00", paid_invoices=1, renewals=1, renewal_rate=1.0,
        refund_rate=0.0, active_subscriptions=1, paid_to_active_ok_pct=100.0),
    row("2003-06-06", revenue_usd="7.25", paid_invoices=1, renewals=1, renewal_rate=1.0,
        refund_rate=0.0, active_subscriptions=2, paid_to_active_ok_pct=100.0),
    row("2003-06-07", active_subscriptions=2, paid_to_active_ok_pct=0.0),
    row("2003-06-08", active_subscriptions=2),
]


def test_kpis_reconcile_with_a_known_history_in_the_api_csv_and_dashboard(
        browser, gateway_url, admin_client):  # noqa: F811
    # Playwright's sync API runs an event loop in this thread: the inserts run in another.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _insert_history()).result()

    r = admin_client.get("/admin/kpis", params=RANGE)
    assert r.status_code == 200, r.text
    assert r.json() == {"series": EXPECTED}

    week = admin_client.get("/admin/kpis", params={**RANGE, "granularity": "week"}).json()
    assert week == {"series": [row(
        "2003-06-02", revenue_usd="32.75", paid_invoices=4, new_customers=2, trials=1,
        trial_conversions=1, renewals=2, renewal_rate=0.6667, refunds=1, refund_rate=0.25,
        churned=1, active_subscriptions=2, paid_to_active_ok_pct=80.0,
        median_first_response_s=1800, csat_ratings=2, csat_avg=3.5)]}

    csv = admin_client.get("/admin/kpis.csv", params=RANGE)
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.splitlines()
    assert lines[0].split(",") == list(EXPECTED[0])
    assert lines[2] == "2003-06-03,15.50,2,2,0,1,0,,0,0.0,0,2,100.0,7200,2,1,5.0"
    assert len(lines) == 1 + len(DAYS)

    bad = admin_client.get("/admin/kpis", params={"from": "2003-06-08", "to": "2003-06-02"})
    assert bad.status_code == 400 and bad.json()["code"] == "VALIDATION_ERROR"
    customer = register(gateway_url)
    assert customer.get("/admin/kpis", params=RANGE).status_code == 403

    page = new_page(browser, gateway_url)
    try:
        sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
        page.goto("/admin")
        expect(page.get_by_role("heading", name="Dashboard", exact=True)).to_be_visible()
        page.get_by_label("From", exact=True).fill(RANGE["from"])
        page.get_by_label("To", exact=True).fill(RANGE["to"])
        page.get_by_role("button", name="Show").click()
        expect(page).to_have_url(f"{gateway_url}/admin/dashboard?from=2003-06-02&to=2003-06-08"
                                 "&granularity=day")

        def shown(chart: str, series: str) -> dict[str, str]:
            marks = page.locator(f'svg[data-chart="{chart}"] [data-series="{series}"]')
            return {m.get_attribute("data-period"): m.get_attribute("data-value")
                    for m in marks.all()}

        def expected(figure: str) -> dict[str, str]:
            return {r["period"]: str(r[figure]) for r in EXPECTED if r[figure] is not None}

        assert shown("revenue", "revenue") == expected("revenue_usd")
        assert shown("customers", "new") == expected("new_customers")
        assert shown("customers", "renewing") == expected("renewals")
        assert shown("active", "active") == expected("active_subscriptions")
        assert shown("rates", "refund") == expected("refund_rate")
        assert shown("rates", "renewal") == expected("renewal_rate")
        assert shown("first-response", "response") == expected("median_first_response_s")
        assert shown("paid-to-active", "provisioned") == expected("paid_to_active_ok_pct")
        title = page.locator('svg[data-chart="revenue"] [data-period="2003-06-03"] title')
        assert title.text_content() == "2003-06-03 · Revenue: $15.50"

        card = page.locator('.kpi-card[data-figure="revenue_usd"]')
        expect(card.locator("[data-last]")).to_have_text("$0.00")
        expect(card.locator("[data-total]")).to_have_text("$32.75")
        expect(page.locator('.kpi-card[data-figure="renewal_rate"] [data-total]')
               ).to_have_text("66.7 %")
        expect(page.locator('.kpi-card[data-figure="median_first_response_s"] [data-total]')
               ).to_have_text("30 min")
        expect(page.locator('.kpi-card[data-figure="paid_to_active_ok_pct"] [data-total]')
               ).to_have_text("80.0 %")
        expect(page.locator('.kpi-card[data-figure="csat_avg"] [data-total]')
               ).to_have_text("3.50 / 5")

        page.goto(f"/lang/ru?next=/admin/dashboard?from={RANGE['from']}%26to={RANGE['to']}")
        expect(page.get_by_role("heading", name="Сводка", exact=True)).to_be_visible()
        expect(page.locator('.kpi-card[data-figure="median_first_response_s"] [data-total]')
               ).to_have_text("30 мин")
        page.goto("/lang/en?next=/admin")

        page.set_viewport_size({"width": 375, "height": 800})
        page.goto(f"/admin/dashboard?from={RANGE['from']}&to={RANGE['to']}")
        assert no_horizontal_overflow(page) <= 375
        box = page.locator('svg[data-chart="revenue"]').bounding_box()
        assert box is not None and 250 < box["width"] <= 375
    finally:
        page.context.close()
