"""The admins' KPIs (`GET /api/v1/admin/kpis`, the dashboard): every service's own figures per
period, put together (docs/06-adr/0008).

Billing, the provisioner and tickets each answer their series for the same periods
(`runtime.periods`); the rows are joined by period. The two rates that need two services are
computed here: the renewal rate (billing's renewals ÷ renewals plus the provisioner's churned
subscriptions) and the refund rate (refunds ÷ paid invoices). A service that cannot answer
makes the whole answer 503: a report with figures silently missing would mislead.
"""

from __future__ import annotations

import asyncio
import csv
import io
from typing import Any

from contracts.public.insight import KpiRow
from gateway.clients import Clients, Who
from runtime.periods import Periods

COLUMNS = tuple(KpiRow.model_fields)


class Insight:
    def __init__(self, clients: Clients):
        self.clients = clients

    async def kpis(self, who: Who, periods: Periods) -> dict[str, Any]:
        """`{series, total}`: a row per period and one over the whole range (the dashboard's
        cards), as `KpiRow`s."""
        billing, provisioner, tickets = await asyncio.gather(
            self.clients.billing.stats(who, periods),
            self.clients.provisioner.stats(who, periods),
            self.clients.tickets.stats(who, periods))
        b, p, t = billing.data, provisioner.data, tickets.data
        series = [kpi_row(*rows) for rows in zip(b.series, p.series, t.series, strict=True)]
        return {"series": series, "total": kpi_row(b.total, p.total, t.total)}


def kpi_row(billing, provisioner, tickets) -> dict[str, Any]:
    """One period's figures from the three services' rows for it."""
    renewals, churned = billing.renewals, provisioner.churned
    return KpiRow(
        period=billing.period, revenue_usd=billing.revenue_usd,
        paid_invoices=billing.paid_invoices, new_customers=billing.new_customers,
        trials=billing.trials, trial_conversions=billing.trial_conversions, renewals=renewals,
        renewal_rate=_ratio(renewals, renewals + churned), refunds=billing.refunds,
        refund_rate=_ratio(billing.refunds, billing.paid_invoices), churned=churned,
        active_subscriptions=provisioner.active_subscriptions,
        paid_to_active_ok_pct=provisioner.paid_to_active_ok_pct,
        median_first_response_s=tickets.median_first_response_s,
        open_tickets=tickets.open_tickets,
        csat_ratings=tickets.rated, csat_avg=tickets.csat_avg,
    ).model_dump(mode="json")


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def to_csv(series: list[dict[str, Any]]) -> str:
    """The series as CSV: a header of the JSON field names, a row per period, empty cells for
    null."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in series:
        writer.writerow(["" if row[c] is None else row[c] for c in COLUMNS])
    return out.getvalue()
