"""What the admin dashboard shows of the KPIs (`gateway.insight`): the cards (the last day of
the range and the whole range, by default today and the last 30 days) and the charts
(`gateway.web.charts`), with the figures formatted in the visitor's language."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from markupsafe import Markup

from gateway.web import charts
from gateway.web.charts import Line
from gateway.web.i18n import Translator

# (figure, how it is shown) in the order of the cards.
CARDS = (("revenue_usd", "money"), ("paid_invoices", "count"), ("new_customers", "count"),
         ("renewals", "count"), ("renewal_rate", "rate"), ("refunds", "count"),
         ("refund_rate", "rate"), ("trials", "count"), ("trial_conversions", "count"),
         ("churned", "count"), ("active_subscriptions", "count"),
         ("paid_to_active_ok_pct", "pct"), ("median_first_response_s", "duration"),
         ("open_tickets", "count"), ("csat_avg", "score"))


def formatter(kind: str, t: Translator) -> Callable[[Any], str]:
    def money(v):
        return f"${Decimal(str(v)):,.2f}"

    def count(v):
        return f"{int(v):,}".replace(",", "\u202f")

    def rate(v):  # a 0-1 fraction shown as a percentage
        return f"{float(v) * 100:.1f} %"

    def pct(v):
        return f"{float(v):.1f} %"

    def duration(v):
        seconds = round(float(v))
        if seconds < 60:
            return t("kpi.seconds", n=seconds)
        minutes = round(seconds / 60)
        if minutes < 60:
            return t("kpi.minutes", n=minutes)
        return t("kpi.hours", h=minutes // 60, m=minutes % 60)

    def score(v):  # CSAT, 1-5
        return f"{float(v):.2f} / 5"

    kinds = {"money": money, "count": count, "rate": rate, "pct": pct, "duration": duration,
             "score": score}
    plain = kinds[kind]
    return lambda v: "—" if v is None else plain(v)


def cards(last: dict, total: dict, t: Translator) -> list[dict[str, str]]:
    return [{"figure": figure, "label": t(f"kpi.{figure}"),
             "last": formatter(kind, t)(last[figure]),
             "total": formatter(kind, t)(total[figure])} for figure, kind in CARDS]


def _line(key: str, label: str, series: list[dict], figure: str,
          scale: float = 1.0) -> Line:
    raw = [None if row[figure] is None else str(row[figure]) for row in series]
    values = [None if row[figure] is None else float(row[figure]) * scale for row in series]
    return Line(key, label, values, raw)


def chart_set(series: list[dict], t: Translator) -> list[tuple[str, str, Markup]]:
    """(id, title, SVG) of every chart, in the page's order."""
    periods = [row["period"] for row in series]
    money = formatter("money", t)
    count = formatter("count", t)
    pct = formatter("pct", t)

    def minutes(v):
        return t("kpi.minutes", n=round(v))

    out = [
        ("revenue", t("kpi.chart.revenue"), charts.bars(
            "revenue", t("kpi.chart.revenue"), periods,
            [_line("revenue", t("kpi.revenue_usd"), series, "revenue_usd")], money)),
        ("customers", t("kpi.chart.customers"), charts.bars(
            "customers", t("kpi.chart.customers"), periods,
            [_line("new", t("kpi.new_customers"), series, "new_customers"),
             _line("renewing", t("kpi.renewals"), series, "renewals")], count, whole=True)),
        ("active", t("kpi.chart.active"), charts.lines(
            "active", t("kpi.chart.active"), periods,
            [_line("active", t("kpi.active_subscriptions"), series, "active_subscriptions")],
            count, whole=True)),
        ("rates", t("kpi.chart.rates"), charts.lines(
            "rates", t("kpi.chart.rates"), periods,
            [_line("refund", t("kpi.refund_rate"), series, "refund_rate", 100),
             _line("renewal", t("kpi.renewal_rate"), series, "renewal_rate", 100)], pct,
            top=100)),
        ("first-response", t("kpi.chart.first_response"), charts.bars(
            "first-response", t("kpi.chart.first_response"), periods,
            [_line("response", t("kpi.median_first_response_s"), series,
                   "median_first_response_s", 1 / 60)], minutes)),
        ("paid-to-active", t("kpi.chart.paid_to_active"), charts.lines(
            "paid-to-active", t("kpi.chart.paid_to_active"), periods,
            [_line("provisioned", t("kpi.paid_to_active_ok_pct"), series,
                   "paid_to_active_ok_pct")], pct, top=100)),
    ]
    return out
