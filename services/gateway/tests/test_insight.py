"""The KPIs put together from the services' own figures (`gateway.insight`), over real HTTP to
stand-in services: rows joined by period, the renewal and refund rates computed from two
services, the CSV, and a 503 when a service cannot answer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pytest

from gateway.clients import Clients
from gateway.insight import Insight, to_csv
from runtime.errors import ServiceUnavailable
from runtime.periods import Periods


@dataclass(frozen=True)
class Admin:
    id: str = "admin-1"
    role: str = "ADMIN"


def billing_row(period, **figures):
    return {"period": period, "revenue_usd": "0.00", "paid_invoices": 0, "new_customers": 0,
            "renewals": 0, "trials": 0, "trial_conversions": 0, "refunds": 0, **figures}


def provisioner_row(period, **figures):
    return {"period": period, "active_subscriptions": 0, "churned": 0, "paid_grants": 0,
            "paid_grants_active": 0, "paid_to_active_ok_pct": None, **figures}


def tickets_row(period, **figures):
    return {"period": period, "opened": 0, "closed": 0, "answered": 0,
            "median_first_response_s": None, "open_tickets": 0, **figures}


@pytest.fixture
async def clients(gateway_settings):
    s = gateway_settings
    c = Clients.connect({"billing": s.billing_url, "tickets": s.tickets_url,
                         "provisioner": s.provisioner_url, "telegram": s.telegram_url},
                        s.internal_signing_key, 5)
    yield c
    await c.close()


async def test_rows_are_joined_by_period_with_the_rates_of_two_services(services, clients):
    d1, d2 = "2026-03-02", "2026-03-03"
    services.set("billing", "GET", "/internal/admin/stats", 200, {
        "series": [billing_row(d1, revenue_usd="20.50", paid_invoices=4, renewals=3, refunds=1,
                               new_customers=1),
                   billing_row(d2)],
        "total": billing_row(d1, revenue_usd="20.50", paid_invoices=4, renewals=3, refunds=1,
                             new_customers=1)})
    services.set("provisioner", "GET", "/internal/admin/stats", 200, {
        "series": [provisioner_row(d1, active_subscriptions=7, churned=1, paid_grants=4,
                                   paid_grants_active=4, paid_to_active_ok_pct=100.0),
                   provisioner_row(d2, active_subscriptions=6, churned=2)],
        "total": provisioner_row(d1, active_subscriptions=6, churned=3, paid_grants=4,
                                 paid_grants_active=4, paid_to_active_ok_pct=100.0)})
    services.set("tickets", "GET", "/internal/admin/stats", 200, {
        "series": [tickets_row(d1, answered=2, median_first_response_s=900, open_tickets=2,
                               rated=2, csat_avg=4.5),
                   tickets_row(d2, open_tickets=1)],
        "total": tickets_row(d1, answered=2, median_first_response_s=900, open_tickets=1)})

    out = await Insight(clients).kpis(Admin(), Periods.between(date(2026, 3, 2),
                                                               date(2026, 3, 3)))
    first, second = out["series"]
    assert first == {"period": d1, "revenue_usd": "20.50", "paid_invoices": 4,
                     "new_customers": 1, "trials": 0, "trial_conversions": 0, "renewals": 3,
                     "renewal_rate": 0.75, "refunds": 1, "refund_rate": 0.25, "churned": 1,
                     "active_subscriptions": 7, "paid_to_active_ok_pct": 100.0,
                     "median_first_response_s": 900, "open_tickets": 2, "csat_ratings": 2,
                     "csat_avg": 4.5}
    assert (second["renewal_rate"], second["refund_rate"], second["churned"]) == (0.0, None, 2)
    assert out["total"]["renewal_rate"] == 0.5 and out["total"]["open_tickets"] == 1
    calls = [c for c in services.calls if c.path == "/internal/admin/stats"]
    assert {c.service for c in calls} == {"billing", "provisioner", "tickets"}

    lines = to_csv(out["series"]).splitlines()
    assert lines[0] == ("period,revenue_usd,paid_invoices,new_customers,trials,"
                        "trial_conversions,renewals,renewal_rate,refunds,refund_rate,churned,"
                        "active_subscriptions,paid_to_active_ok_pct,median_first_response_s,"
                        "open_tickets,csat_ratings,csat_avg")
    assert lines[1] == "2026-03-02,20.50,4,1,0,0,3,0.75,1,0.25,1,7,100.0,900,2,2,4.5"
    assert lines[2] == "2026-03-03,0.00,0,0,0,0,0,0.0,0,,2,6,,,1,0,"


async def test_a_service_that_cannot_answer_makes_the_kpis_unavailable(services, clients):
    d = "2026-03-02"
    services.set("billing", "GET", "/internal/admin/stats", 200,
                 {"series": [billing_row(d)], "total": billing_row(d)})
    services.set("tickets", "GET", "/internal/admin/stats", 200,
                 {"series": [tickets_row(d)], "total": tickets_row(d)})
    services.set("provisioner", "GET", "/internal/admin/stats", 500, {"oops": True})
    with pytest.raises(ServiceUnavailable):
        await Insight(clients).kpis(Admin(), Periods.between(date(2026, 3, 2),
                                                             date(2026, 3, 2)))
