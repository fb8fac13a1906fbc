"""The admin panel (`/admin`): users, plans, invoices, subscriptions, servers, support, audit,
system.

SUPPORT staff see only the support queue; everything else needs ADMIN. Every mutation goes
through `Pages`, which records it in the audit log exactly as the API does.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from contracts.public.billing import (
    AdjustmentBody,
    PlanCreate,
    PlanUpdate,
    PromoCodeCreate,
    PromoCodeUpdate,
    RefundBody,
)
from contracts.public.servers import ServerCreate, ServerUpdate
from contracts.public.subscriptions import ExtendBody
from contracts.public.tickets import MessageCreate
from gateway.insight import Insight
from gateway.schemas import RoleBody
from gateway.web import dashboard, views
from gateway.web.deps import Admin, Form, Staff
from gateway.web.forms import FormInvalid, field_errors, refusal_errors, upstream_errors, validate
from gateway.web.pages import Pages
from gateway.web.rendering import WebRoute, render, render_thread, see_other, translator
from runtime.errors import AppError, NotFound, ValidationFailed
from runtime.pagination import decode_int_cursor
from runtime.periods import PeriodQuery

router = APIRouter(prefix="/admin", route_class=WebRoute)


def _back(request: Request, list_path: str, done: str) -> RedirectResponse:
    """Back to the list the action came from (its filters kept), with a confirmation."""
    referer = urlsplit(request.headers.get("referer", ""))
    same_list = referer.netloc == request.url.netloc and referer.path == list_path
    kept = [(k, v) for k, v in parse_qsl(referer.query) if k != "done"] if same_list else []
    return see_other(f"{list_path}?{urlencode([*kept, ('done', done)])}")


async def _owned_list(request: Request, template: str, rows: str, page: dict,
                      **values) -> HTMLResponse:
    """A page of a list whose rows belong to customers (`page[rows]`), with their emails."""
    emails = await Pages(request).emails({row["user_id"] for row in page[rows]})
    return render(request, template, **{rows: page[rows]}, emails=emails,
                  next_cursor=page.get("next_cursor"), **values)


async def _owned_record(request: Request, template: str, name: str, record: dict, status: int,
                        errors: dict | None, values: dict | None, **more) -> HTMLResponse:
    """The page of one customer's row (`record`, as `name`), with their email and the state of
    the page's form."""
    return render(request, template, http_status=status, **{name: record},
                  email=await Pages(request).email(record["user_id"]), errors=errors or {},
                  values=values or {}, **more)


@router.get("")
async def home(request: Request, caller: Staff):
    return see_other("/admin/dashboard" if caller.role == "ADMIN" else "/admin/tickets")


# ---- dashboard -----------------------------------------------------------------------------
@router.get("/dashboard")
async def dashboard_page(request: Request, caller: Admin, periods: PeriodQuery):
    """The KPIs of the range (default: the last 30 days up to today) as cards and charts."""
    kpis = await Insight(request.app.state.clients).kpis(caller, periods)
    t = translator(request)
    return render(request, "admin/dashboard.html", periods=periods, series=kpis["series"],
                  cards=dashboard.cards(kpis["series"][-1], kpis["total"], t),
                  charts=dashboard.chart_set(kpis["series"], t))


# ---- users ---------------------------------------------------------------------------------
@router.get("/users")
async def users(request: Request, caller: Admin, q: str | None = None,
                cursor: str | None = None):
    found, next_cursor = await Pages(request).search_users((q or "")[:254], cursor)
    return render(request, "admin/users.html", users=found, q=q or "", next_cursor=next_cursor)


@router.post("/users/{user_id}/block")
async def block(request: Request, caller: Admin, form: Form, user_id: str):
    await Pages(request).set_blocked(caller, user_id, True)
    return _back(request, "/admin/users", "user_blocked")


@router.post("/users/{user_id}/unblock")
async def unblock(request: Request, caller: Admin, form: Form, user_id: str):
    await Pages(request).set_blocked(caller, user_id, False)
    return _back(request, "/admin/users", "user_unblocked")


@router.post("/users/{user_id}/role")
async def change_role(request: Request, caller: Admin, form: Form, user_id: str):
    try:
        body = validate(RoleBody, form, translator(request))
    except FormInvalid as exc:
        raise ValidationFailed(exc.errors.get("role")) from exc
    await Pages(request).set_role(caller, user_id, body.role)
    return _back(request, "/admin/users", "role_changed")


@router.get("/users/{user_id}/balance")
async def user_balance(request: Request, caller: Admin, user_id: str,
                       cursor: str | None = None):
    return await _balance_page(request, caller, user_id, cursor, errors={}, form={})


async def _balance_page(request: Request, caller, user_id: str, cursor: str | None, *,
                        errors: dict, form: dict, http_status: int = 200,
                        headers: dict | None = None) -> HTMLResponse:
    pages = Pages(request)
    page, email = await asyncio.gather(pages.admin_balance(caller, user_id, cursor),
                                       pages.email(user_id))
    if email is None:
        raise NotFound("User not found")
    return render(request, "admin/balance.html", http_status=http_status, headers=headers,
                  user_id=user_id, email=email, balance_usd=page["balance_usd"],
                  entries=page["entries"], next_cursor=page.get("next_cursor"), errors=errors,
                  form=form, idempotency_key=uuid.uuid4().hex)


@router.post("/users/{user_id}/balance/adjustments")
async def adjust_balance(request: Request, caller: Admin, form: Form, user_id: str):
    t = translator(request)
    pages = Pages(request)
    try:
        body = validate(AdjustmentBody, {"amount_usd": form.get("amount_usd", "").strip(),
                                         "note": form.get("note", "").strip()}, t)
        await pages.adjust_balance(caller, user_id, body,
                                   form.get("idempotency_key") or uuid.uuid4().hex)
    except FormInvalid as exc:
        return await _balance_page(request, caller, user_id, None, errors=exc.errors,
                                   form=form, http_status=400)
    except AppError as exc:
        if exc.status >= 500 or exc.status == 404:
            raise
        errors = ({"amount_usd": t("balance.insufficient")}
                  if exc.code == "INSUFFICIENT_BALANCE" else upstream_errors(exc, t, "form"))
        return await _balance_page(request, caller, user_id, None, errors=errors, form=form,
                                   http_status=exc.status, headers=exc.headers)
    return see_other(f"/admin/users/{user_id}/balance?done=balance_adjusted")


# ---- promo codes ---------------------------------------------------------------------------
@router.get("/promo-codes")
async def promo_codes(request: Request, caller: Admin):
    return render(request, "admin/promo_codes.html",
                  codes=await Pages(request).promo_codes(caller), errors={}, values={})


@router.post("/promo-codes")
async def create_promo_code(request: Request, caller: Admin, form: Form):
    pages = Pages(request)
    t = translator(request)
    values = {k: v.strip() for k, v in form.items() if isinstance(v, str)}
    data = {**values, "plan_ids": [p for p in values.get("plan_ids", "").split() if p] or None,
            "first_purchase_only": values.get("first_purchase_only") == "on"}
    for name in ("starts_at", "ends_at"):  # the form's local time is taken as UTC
        if data.get(name):
            data[name] = f"{data[name]}:00+00:00" if len(data[name]) == 16 else data[name]
    try:
        await pages.create_promo_code(caller, validate(PromoCodeCreate, data, t))
    except FormInvalid as exc:
        errors = exc.errors
    except AppError as exc:
        errors = refusal_errors(exc, t, "code")
    else:
        return see_other("/admin/promo-codes?done=promo_code_created")
    return render(request, "admin/promo_codes.html", http_status=400,
                  codes=await pages.promo_codes(caller), errors=errors, values=values)


@router.post("/promo-codes/{code_id}/active")
async def set_promo_code_active(request: Request, caller: Admin, form: Form, code_id: str):
    active = form.get("is_active") == "true"
    await Pages(request).update_promo_code(caller, code_id, PromoCodeUpdate(is_active=active))
    return see_other("/admin/promo-codes?done=" + ("promo_code_on" if active else
                                                   "promo_code_off"))


# ---- plans ---------------------------------------------------------------------------------
@router.get("/plans")
async def plans(request: Request, caller: Admin):
    return render(request, "admin/plans.html", plans=await Pages(request).all_plans(caller),
                  errors={}, values={})


@router.post("/plans")
async def create_plan(request: Request, caller: Admin, form: Form):
    pages = Pages(request)
    try:
        body = validate(PlanCreate, form, translator(request))
        await pages.create_plan(caller, body)
    except FormInvalid as exc:
        errors = exc.errors
    except AppError as exc:
        errors = refusal_errors(exc, translator(request))
    else:
        return see_other("/admin/plans?done=plan_created")
    return render(request, "admin/plans.html", http_status=400, plans=await pages.all_plans(caller),
                  errors=errors, values=form)


async def _plan(request: Request, caller, plan_id: str) -> dict:
    for plan in await Pages(request).all_plans(caller):
        if plan["id"] == plan_id:
            return plan
    raise NotFound("Plan not found")


@router.get("/plans/{plan_id}")
async def edit_plan_page(request: Request, caller: Admin, plan_id: str):
    plan = await _plan(request, caller, plan_id)
    return render(request, "admin/plan_edit.html", plan=plan, errors={}, values=plan)


@router.post("/plans/{plan_id}")
async def edit_plan(request: Request, caller: Admin, form: Form, plan_id: str):
    try:
        body = validate(PlanUpdate, form, translator(request))
        await Pages(request).update_plan(caller, plan_id, body)
    except FormInvalid as exc:
        errors = exc.errors
    except AppError as exc:
        errors = refusal_errors(exc, translator(request), raise_not_found=True)
    else:
        return see_other("/admin/plans?done=plan_saved")
    plan = await _plan(request, caller, plan_id)
    return render(request, "admin/plan_edit.html", http_status=400, plan=plan, errors=errors,
                  values=form)


@router.post("/plans/{plan_id}/active")
async def set_plan_active(request: Request, caller: Admin, form: Form, plan_id: str):
    active = form.get("active") == "true"
    await Pages(request).update_plan(caller, plan_id, PlanUpdate(is_active=active))
    return see_other(f"/admin/plans?done={'plan_activated' if active else 'plan_deactivated'}")


# ---- invoices ------------------------------------------------------------------------------
@router.get("/invoices")
async def invoices(request: Request, caller: Admin, status: str | None = None,
                   cursor: str | None = None):
    page = await Pages(request).all_invoices(caller, views.invoice_status(status), cursor)
    return await _owned_list(request, "admin/invoices.html", "invoices", page,
                             status=views.invoice_status(status))


async def _invoice_page(request: Request, caller, invoice_id: str, status: int = 200,
                        errors: dict | None = None, values: dict | None = None):
    invoice = await Pages(request).any_invoice(caller, invoice_id)
    return await _owned_record(request, "admin/invoice.html", "invoice", invoice, status, errors,
                               values)


@router.get("/invoices/{invoice_id}")
async def invoice(request: Request, caller: Admin, invoice_id: str):
    return await _invoice_page(request, caller, invoice_id)


@router.post("/invoices/{invoice_id}/refund")
async def refund(request: Request, caller: Admin, form: Form, invoice_id: str):
    try:
        body = validate(RefundBody, form, translator(request))
        await Pages(request).refund(caller, invoice_id, body)
    except FormInvalid as exc:
        errors = exc.errors
    except AppError as exc:
        errors = refusal_errors(exc, translator(request), "reason", raise_not_found=True)
    else:
        return see_other(f"/admin/invoices/{invoice_id}?done=invoice_refunded")
    return await _invoice_page(request, caller, invoice_id, 400, errors, form)


# ---- subscriptions -------------------------------------------------------------------------
async def _subscriptions_page(request: Request, caller, user_id: str | None, status: str | None,
                              cursor: str | None, http_status: int = 200,
                              errors: dict | None = None):
    page = await Pages(request).all_subscriptions(caller, user_id or None,
                                                  views.subscription_status(status), cursor)
    return await _owned_list(request, "admin/subscriptions.html", "subscriptions", page,
                             http_status=http_status, user_id=user_id or "",
                             filter_status=views.subscription_status(status), errors=errors or {})


@router.get("/subscriptions")
async def subscriptions(request: Request, caller: Admin, user_id: str | None = None,
                        status: str | None = None, cursor: str | None = None):
    return await _subscriptions_page(request, caller, (user_id or "")[:64], status, cursor)


@router.post("/subscriptions/{subscription_id}/extend")
async def extend(request: Request, caller: Admin, form: Form, subscription_id: str):
    try:
        body = validate(ExtendBody, form, translator(request))
    except FormInvalid as exc:
        return await _subscriptions_page(request, caller, None, None, None, 400,
                                         {subscription_id: exc.errors.get("days", "")})
    await Pages(request).change_subscription(caller, subscription_id, "extend", body)
    return _back(request, "/admin/subscriptions", "subscription_extended")


@router.post("/subscriptions/{subscription_id}/suspend")
async def suspend(request: Request, caller: Admin, form: Form, subscription_id: str):
    await Pages(request).change_subscription(caller, subscription_id, "suspend")
    return _back(request, "/admin/subscriptions", "subscription_suspended")


@router.post("/subscriptions/{subscription_id}/resume")
async def resume(request: Request, caller: Admin, form: Form, subscription_id: str):
    await Pages(request).change_subscription(caller, subscription_id, "resume")
    return _back(request, "/admin/subscriptions", "subscription_resumed")


@router.post("/subscriptions/{subscription_id}/link")
async def rotate_link(request: Request, caller: Admin, form: Form, subscription_id: str):
    """A new subscription link for the customer (a leaked one), as `POST
    /api/v1/admin/subscriptions/{id}/link` (audited); the old one is refused at once."""
    await Pages(request).actions.link(caller, subscription_id, "rotate")
    return _back(request, "/admin/subscriptions", "subscription_link_rotated")


# ---- the server pool -----------------------------------------------------------------------
CREDENTIAL_FIELDS = ("username", "password", "api_token", "api_url")


def _server_form(form: dict) -> dict:
    """The form as a `ServerCreate` body: driver settings as a JSON object, each credential
    field sent only when filled in (they are never shown again)."""
    raw = (form.get("settings") or "").strip()
    try:
        settings = json.loads(raw) if raw else {}
    except ValueError:
        settings = None
    values = {k: form.get(k) for k in ("name", "location", "backend", "base_url", "capacity",
                                        "status") if form.get(k)}
    values["settings"] = settings
    values["credentials"] = {k: form[k] for k in CREDENTIAL_FIELDS if form.get(k)}
    return values


async def _servers_page(request: Request, caller, http_status: int = 200,
                        errors: dict | None = None, values: dict | None = None):
    return render(request, "admin/servers.html", http_status=http_status,
                  servers=await Pages(request).servers(caller), errors=errors or {},
                  values=values or {}, backends=views.SERVER_BACKENDS,
                  statuses=views.SERVER_STATUSES)


@router.get("/servers")
async def servers(request: Request, caller: Admin):
    return await _servers_page(request, caller)


@router.post("/servers")
async def create_server(request: Request, caller: Admin, form: Form):
    t = translator(request)
    try:
        values = _server_form(form)
        if values["settings"] is None or not isinstance(values["settings"], dict):
            raise FormInvalid({"settings": t("servers.settings_json")})
        body = ServerCreate.model_validate(values, strict=False)
        await Pages(request).create_server(caller, body)
    except FormInvalid as exc:
        errors = exc.errors
    except ValidationError as exc:
        errors = field_errors(exc.errors(), t)
    except AppError as exc:
        errors = refusal_errors(exc, t)
    else:
        return see_other("/admin/servers?done=server_created")
    kept = {k: v for k, v in form.items() if k not in CREDENTIAL_FIELDS}
    return await _servers_page(request, caller, 400, errors, kept)


@router.post("/servers/{server_id}")
async def update_server(request: Request, caller: Admin, form: Form, server_id: str):
    t = translator(request)
    try:
        body = validate(ServerUpdate, {k: form.get(k) for k in ("capacity", "status")}, t)
        await Pages(request).update_server(caller, server_id, body)
    except FormInvalid as exc:
        return await _servers_page(request, caller, 400, {server_id: next(
            iter(exc.errors.values()), "")})
    except AppError as exc:
        if exc.status >= 500 or exc.status == 404:
            raise
        return await _servers_page(request, caller, 400, {server_id: exc.message})
    return see_other("/admin/servers?done=server_saved")


@router.post("/servers/{server_id}/drain")
async def drain_server(request: Request, caller: Admin, form: Form, server_id: str):
    """Move every access off the server, then DISABLED (`provisioner.moves`)."""
    try:
        await Pages(request).drain_server(caller, server_id)
    except AppError as exc:
        if exc.status >= 500 or exc.status == 404:
            raise
        return await _servers_page(request, caller, 400, {server_id: exc.message})
    return see_other("/admin/servers?done=server_draining")


# ---- support queue -------------------------------------------------------------------------
@router.get("/tickets")
async def queue(request: Request, caller: Staff, status: str | None = None,
                cursor: str | None = None):
    page = await Pages(request).queue(caller, views.ticket_status(status), cursor)
    return await _owned_list(request, "admin/tickets.html", "tickets", page,
                             status=views.ticket_status(status))


async def _ticket_page(request: Request, caller, ticket_id: str, status: int = 200,
                       errors: dict | None = None, values: dict | None = None):
    found = await Pages(request).staff_ticket(caller, ticket_id, customer=True)
    return await _owned_record(request, "admin/ticket.html", "ticket", found, status, errors,
                               values, version=views.ticket_version(found))


@router.get("/tickets/{ticket_id}")
async def ticket(request: Request, caller: Staff, ticket_id: str):
    return await _ticket_page(request, caller, ticket_id)


@router.get("/tickets/{ticket_id}/thread")
async def ticket_thread(request: Request, caller: Staff, ticket_id: str, v: str = ""):
    found = await Pages(request).staff_ticket(caller, ticket_id)
    return render_thread(request, found, v, f"/admin/tickets/{ticket_id}/thread")


@router.post("/tickets/{ticket_id}/messages")
async def answer(request: Request, caller: Staff, form: Form, ticket_id: str):
    try:
        body = validate(MessageCreate, form, translator(request))
    except FormInvalid as exc:
        return await _ticket_page(request, caller, ticket_id, 400, exc.errors, form)
    await Pages(request).answer_ticket(caller, ticket_id, body)
    return see_other(f"/admin/tickets/{ticket_id}?done=answer_sent")


@router.post("/tickets/{ticket_id}/close")
async def close(request: Request, caller: Staff, form: Form, ticket_id: str):
    await Pages(request).staff_close(caller, ticket_id)
    return see_other(f"/admin/tickets/{ticket_id}?done=ticket_closed")


# ---- audit log and system ------------------------------------------------------------------
@router.get("/audit-log")
async def audit_log(request: Request, caller: Admin, cursor: str | None = None):
    entries, next_cursor = await Pages(request).audit_log(decode_int_cursor(cursor))
    return render(request, "admin/audit.html", entries=entries, next_cursor=next_cursor)


@router.get("/system")
async def system(request: Request, caller: Admin):
    pages = Pages(request)
    services, queues = await asyncio.gather(pages.readiness(), pages.queues(caller))
    return render(request, "admin/system.html", services=services, queues=queues)


@router.post("/system/dead-letters/{dead_letter_id}/replay")
async def replay(request: Request, caller: Admin, form: Form, dead_letter_id: str):
    await Pages(request).replay_dead_letter(caller, dead_letter_id)
    return see_other("/admin/system?done=dead_letter_replayed")


@router.post("/system/jobs/{queue}/{job_id}/retry")
async def retry(request: Request, caller: Admin, form: Form, queue: str, job_id: str):
    await Pages(request).retry_job(caller, queue, job_id)
    return see_other("/admin/system?done=job_retried")
