"""`/admin/kpis` and `/admin/kpis.csv`: the KPIs per day or week (ADMIN only), put together by
`gateway.insight` from every service's own figures."""

from __future__ import annotations

from fastapi import APIRouter, Response

from contracts.public.common import ErrorOut
from contracts.public.insight import KpisOut
from gateway.api.deps import AdminCaller, Clients
from gateway.insight import Insight, to_csv
from runtime.periods import PeriodQuery

router = APIRouter(prefix="/admin", tags=["admin"])

ERRORS = {400: {"model": ErrorOut}, 503: {"model": ErrorOut}}


@router.get("/kpis", response_model=KpisOut, responses=ERRORS)
async def kpis(clients: Clients, caller: AdminCaller, periods: PeriodQuery):
    """Every KPI per period: `from` and `to` (ISO dates, UTC, from 1970-01-01 to 9998-12-31;
    default the last 30 days up to today), `granularity` `day` or `week` (ISO weeks from
    Monday). `from` after `to`, or more than 366 periods, is 400 `VALIDATION_ERROR`."""
    return {"series": (await Insight(clients).kpis(caller, periods))["series"]}


@router.get("/kpis.csv", response_class=Response, responses={
    **ERRORS, 200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                    "description": "The same series as CSV, a header row of the field names"}})
async def kpis_csv(clients: Clients, caller: AdminCaller, periods: PeriodQuery):
    """The same series as `GET /admin/kpis`, as CSV (same parameters and refusals)."""
    series = (await Insight(clients).kpis(caller, periods))["series"]
    name = f"kpis-{periods.first.isoformat()}-{periods.last.isoformat()}.csv"
    return Response(to_csv(series), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
