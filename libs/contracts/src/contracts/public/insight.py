"""The KPI shapes (docs/06-adr/0008): each service's own series, and the gateway's
`GET /api/v1/admin/kpis` that puts them together.

A service's internal `GET /internal/admin/stats` answers its `*StatsOut`: one row per period
(`period` = its first day, ISO date) and `total`, the same figures over the whole range (its
`period` is the range's first day; "at the end" figures are at the end of the range).
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from contracts.public.common import Money

__all__ = ["BillingStatsOut", "BillingStatsRow", "KpiRow", "KpisOut", "ProvisionerStatsOut",
           "ProvisionerStatsRow", "TicketsStatsOut", "TicketsStatsRow"]


class BillingStatsRow(BaseModel):
    period: str
    revenue_usd: Money = Field(description="Plan and renewal invoices paid in the period")
    paid_invoices: int
    new_customers: int = Field(description="Customers whose first paid plan is in the period")
    renewals: int = Field(description="Paid plans of customers who had paid for one before")
    trials: int
    trial_conversions: int = Field(description="Customers with a trial whose first paid plan "
                                               "is in the period")
    refunds: int


class BillingStatsOut(BaseModel):
    series: list[BillingStatsRow]
    total: BillingStatsRow


class ProvisionerStatsRow(BaseModel):
    period: str
    active_subscriptions: int = Field(description="Subscriptions with time at the period's end")
    churned: int = Field(description="Subscriptions whose time ran out in the period and was "
                                     "not renewed in time")
    paid_grants: int = Field(description="Paid invoices that reached the provisioner")
    paid_grants_active: int = Field(description="... of them applied on the VPN backend")
    paid_to_active_ok_pct: float | None


class ProvisionerStatsOut(BaseModel):
    series: list[ProvisionerStatsRow]
    total: ProvisionerStatsRow


class TicketsStatsRow(BaseModel):
    period: str
    opened: int
    closed: int
    answered: int = Field(description="Tickets whose first staff answer is in the period")
    median_first_response_s: int | None
    open_tickets: int = Field(description="Tickets open at the period's end")
    rated: int = Field(0, description="Tickets the customer rated (CSAT) in the period")
    csat_avg: float | None = Field(None, description="Their mean score (1-5), 2 decimals")


class TicketsStatsOut(BaseModel):
    series: list[TicketsStatsRow]
    total: TicketsStatsRow


class KpiRow(BaseModel):
    period: str = Field(description="The period's first day (a Monday for weeks), ISO date")
    revenue_usd: Money
    paid_invoices: int
    new_customers: int
    trials: int
    trial_conversions: int
    renewals: int
    renewal_rate: float | None = Field(description="renewals ÷ (renewals + churned), 0-1; "
                                                   "null when both are 0")
    refunds: int
    refund_rate: float | None = Field(description="refunds ÷ paid_invoices, null when none paid")
    churned: int
    active_subscriptions: int
    paid_to_active_ok_pct: float | None = Field(
        description="Share (%) of the period's paid invoices applied on the VPN backend")
    median_first_response_s: int | None
    open_tickets: int
    csat_ratings: int = Field(0, description="Tickets their customer rated (CSAT) in the period")
    csat_avg: float | None = Field(None, description="Their mean score (1-5), 2 decimals; null "
                                                     "when none was rated")


class KpisOut(BaseModel):
    series: list[KpiRow]
