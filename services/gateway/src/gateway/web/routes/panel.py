"""The customer panel (`/app`): subscription, access, buying, invoices, tickets, settings."""

from __future__ import annotations

import asyncio
import re
import uuid

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from contracts.public.billing import InvoiceCreate, TopUpCreate
from contracts.public.moves import LocationBody
from contracts.public.subscriptions import AutoRenewBody
from contracts.public.tickets import MessageCreate, TicketCreate
from gateway.commerce import set_auto_renew, start_trial
from gateway.web import views
from gateway.web.deps import Form, SignedIn
from gateway.web.forms import (
    FormInvalid,
    PasswordForm,
    password_errors,
    refusal_errors,
    upstream_errors,
    validate,
)
from gateway.web.pages import Pages
from gateway.web.qr import qr_svg
from gateway.web.rendering import WebRoute, render, render_thread, see_other, translator
from gateway.web.routes import attachments
from runtime.errors import AppError, RateLimited, ServiceUnavailable

router = APIRouter(prefix="/app", route_class=WebRoute)


def _is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


@router.get("")
async def dashboard(request: Request, caller: SignedIn):
    pages = Pages(request)
    subscriptions, plans = await asyncio.gather(pages.subscriptions(caller), pages.plans(caller))
    subscription = views.current(subscriptions)
    usage = (await pages.usage(caller, subscription["id"])
             if subscription and subscription["status"] in views.RUNNING else None)
    renewal = views.renewal_due(subscription)
    if renewal is not None and renewal["auto_renew"]:
        cover = await pages.renewal_cover(caller, renewal["plan_id"])
        renewal = None if cover["covered"] else {**renewal, "cover": cover}
    return render(request, "panel/dashboard.html", subscription=subscription,
                  subscriptions=subscriptions, plans={p["id"]: p for p in plans},
                  renewal=renewal, usage=usage)


@router.post("/subscriptions/{subscription_id}/auto-renew")
async def auto_renew(request: Request, caller: SignedIn, form: Form, subscription_id: str):
    """The dashboard's auto-renewal switch, as `PUT /api/v1/subscriptions/{id}/auto-renew`."""
    pages = Pages(request)
    t = translator(request)
    await pages.state.limits.auto_renew(caller.id)
    enabled = form.get("enabled") == "1"
    try:
        body = validate(AutoRenewBody, {"enabled": enabled,
                                        "plan_id": form.get("plan_id") or None}, t)
        await set_auto_renew(pages.clients, caller, subscription_id, body)
    except FormInvalid:
        return see_other("/app?done=auto_renew_invalid")
    except AppError as exc:
        if exc.status >= 500 or exc.status == 404:
            raise
        return see_other("/app?done=auto_renew_invalid")
    return see_other("/app?done=" + ("auto_renew_on" if enabled else "auto_renew_off"))


@router.post("/trial")
async def trial(request: Request, caller: SignedIn, form: Form):
    """The free trial, as `POST /api/v1/trial` does it."""
    pages = Pages(request)
    await pages.state.limits.invoice(caller.id)
    try:
        status, _ = await start_trial(pages.clients, caller)
    except AppError as exc:
        if exc.code != "TRIAL_UNAVAILABLE":
            raise
        return see_other("/app?done=trial_unavailable")
    return see_other("/app?done=" + ("trial_started" if status == 201 else "trial_activating"))


@router.get("/access")
async def access(request: Request, caller: SignedIn):
    pages = Pages(request)
    active = [s for s in await pages.subscriptions(caller) if s["status"] in views.RUNNING]
    configs = await asyncio.gather(*(pages.access(caller, s["id"]) for s in active))
    t = translator(request)
    platform = views.platform_of(request.headers.get("user-agent"))
    items = []
    for s, a in zip(active, configs, strict=True):
        mine, others = views.apps_for(a.get("apps") or [], platform)
        items.append({"subscription": s, "access": a, "apps": mine, "other_apps": others,
                      "qr": qr_svg(a.get("subscription_url") or a["access_url"],
                                   t("access.qr_title"))})
    locations = await _locations(pages) if items else []
    return render(request, "panel/access.html", items=items, locations=locations)


async def _locations(pages: Pages) -> list[dict]:
    """Where an access can move to now; none (no choice shown) while the provisioner cannot
    say."""
    try:
        return (await pages.clients.provisioner.locations()).json()["locations"]
    except AppError:
        return []


# The access page's answers to a location change, by the provisioner's refusal code.
LOCATION_REFUSALS = {"POOL_FULL": "location_full", "MOVE_IN_PROGRESS": "location_busy"}


@router.post("/subscriptions/{subscription_id}/location")
async def change_location(request: Request, caller: SignedIn, form: Form,
                          subscription_id: str):
    """The access page's location choice, as `PUT /api/v1/subscriptions/{id}/location` (the
    same rate limit); a refusal comes back as a notice on the page."""
    pages = Pages(request)
    await pages.state.limits.location_change(caller.id)
    try:
        body = LocationBody.model_validate({"location_id": form.get("location_id") or ""})
        reply = await pages.clients.provisioner.change_location(caller, subscription_id, body)
    except ValidationError:
        return see_other("/app/access?done=location_refused")
    except AppError as exc:
        if exc.status >= 500 or isinstance(exc, RateLimited):
            raise
        return see_other("/app/access?done=" + LOCATION_REFUSALS.get(exc.code,
                                                                    "location_refused"))
    return see_other("/app/access?done=" + ("location_same" if reply.status_code == 200
                                            else "location_moving"))


@router.post("/subscriptions/{subscription_id}/link")
async def change_link(request: Request, caller: SignedIn, form: Form, subscription_id: str):
    """The access page's "new link" and "revoke link", as `POST` and `DELETE
    /api/v1/subscriptions/{id}/link`."""
    pages = Pages(request)
    await pages.state.limits.link_change(caller.id)
    if form.get("action") == "revoke":
        await pages.clients.provisioner.revoke_link(caller, subscription_id)
        return see_other("/app/access?done=link_revoked")
    await pages.clients.provisioner.rotate_link(caller, subscription_id)
    return see_other("/app/access?done=link_rotated")


@router.get("/buy")
async def choose_plan(request: Request, caller: SignedIn):
    pages = Pages(request)
    plans, backend = await asyncio.gather(pages.plans(caller), pages.backend(caller))
    return render(request, "panel/buy_plans.html", plans=plans, backend=backend)


async def _buy_options(pages: Pages, caller, plan_id: str) -> dict:
    plan, options, balance, backend = await asyncio.gather(
        pages.plan(caller, plan_id), pages.payment_options(caller), pages.balance(caller),
        pages.backend(caller))
    return {"plan": plan, "options": options, "balance_usd": balance["balance_usd"],
            "backend": backend}


@router.get("/buy/{plan_id}")
async def choose_payment(request: Request, caller: SignedIn, plan_id: str):
    return render(request, "panel/buy_options.html", errors={}, form={}, preview=None,
                  idempotency_key=uuid.uuid4().hex,
                  **await _buy_options(Pages(request), caller, plan_id))


PROMO_PATTERN = re.compile(r"^[A-Za-z0-9_-]{3,32}$")


@router.get("/buy/{plan_id}/promo")
async def promo_preview(request: Request, caller: SignedIn, plan_id: str,
                        promo_code: str = ""):
    """The price with the code typed so far (htmx, as the customer types)."""
    return render(request, "panel/_promo_preview.html",
                  preview=await _preview(Pages(request), caller, plan_id, promo_code))


async def _preview(pages: Pages, caller, plan_id: str, code: str) -> dict | None:
    code = code.strip()
    if not code:
        return None
    if not PROMO_PATTERN.match(code):
        return {"valid": False, "reason": "unknown"}
    try:
        return await pages.promo_preview(caller, code, plan_id)
    except AppError as exc:
        if exc.status >= 500:
            raise
        return {"valid": False, "reason": "unknown"}


def _payment_choice(form: dict, options: list[dict]) -> dict:
    """The form's payment choice as the invoice's fields: an `asset/network` option, or the
    balance (which still names an accepted option, as the API requires)."""
    if form.get("option") == "balance":
        first = options[0] if options else {"asset": "", "network": ""}
        return {"asset": first["asset"], "network": first["network"], "pay_with": "balance"}
    return option_fields(form)


def option_fields(form: dict) -> dict:
    """A payment option as the form sends it (`provider/asset/network`) as the API's fields."""
    parts = form.get("option", "").split("/")
    provider = parts.pop(0) if len(parts) == 3 else None
    asset, network = (parts + ["", ""])[:2]
    return {"asset": asset, "network": network,
            **({"provider": provider} if provider else {})}


def _refusal(exc: FormInvalid | AppError, t, field: str) -> tuple[int, dict | None, dict]:
    """How a refused form is shown again: its status, headers and the message per field."""
    if isinstance(exc, AppError) and (exc.status >= 500 or exc.status == 404):
        raise exc
    if isinstance(exc, FormInvalid):
        return 400, None, {field: next(iter(exc.errors.values()))}
    if exc.code == "INSUFFICIENT_BALANCE":
        return exc.status, exc.headers, {field: t("balance.insufficient")}
    if exc.code == "PROMO_CODE_INVALID" and isinstance(exc.details, dict):
        reason = exc.details.get("reason")
        return exc.status, exc.headers, {"promo_code": t(f"promo.reason.{reason}")}
    return exc.status, exc.headers, upstream_errors(exc, t, field)


@router.post("/invoices")
async def create_invoice(request: Request, caller: SignedIn, form: Form):
    pages = Pages(request)
    t = translator(request)
    try:
        choice = _payment_choice(form, await pages.payment_options(caller))
        promo = form.get("promo_code", "").strip()
        body = validate(InvoiceCreate, {"plan_id": form.get("plan_id", ""), **choice,
                                        "promo_code": promo}, t)
        invoice = await pages.create_invoice(caller, body,
                                             form.get("idempotency_key") or uuid.uuid4().hex)
    except (FormInvalid, AppError) as exc:
        status, headers, errors = _refusal(exc, t, "option")
        if isinstance(exc, FormInvalid) and "promo_code" in exc.errors:
            errors = {"promo_code": t("promo.reason.unknown")}
        return render(request, "panel/buy_options.html", http_status=status, headers=headers,
                      idempotency_key=uuid.uuid4().hex, errors=errors, form=form,
                      preview=None, **await _buy_options(pages, caller, form.get("plan_id", "")))
    return see_other(f"/app/invoices/{invoice['id']}")


@router.get("/balance")
async def balance(request: Request, caller: SignedIn, cursor: str | None = None):
    return await _balance_page(request, caller, cursor, errors={}, form={})


async def _balance_page(request: Request, caller, cursor: str | None, *, errors: dict,
                        form: dict, http_status: int = 200, headers: dict | None = None):
    pages = Pages(request)
    page, options = await asyncio.gather(pages.balance(caller, cursor),
                                         pages.payment_options(caller))
    return render(request, "panel/balance.html", http_status=http_status, headers=headers,
                  balance_usd=page["balance_usd"], entries=page["entries"],
                  next_cursor=page.get("next_cursor"), options=options, errors=errors,
                  form=form, idempotency_key=uuid.uuid4().hex)


@router.get("/referrals")
async def referrals(request: Request, caller: SignedIn):
    return render(request, "panel/referrals.html", referrals=await Pages(request).referrals(caller))


@router.post("/balance/top-ups")
async def top_up(request: Request, caller: SignedIn, form: Form):
    pages = Pages(request)
    t = translator(request)
    try:
        body = validate(TopUpCreate, {"amount_usd": form.get("amount_usd", "").strip(),
                                      **option_fields(form)}, t)
        invoice = await pages.top_up(caller, body,
                                     form.get("idempotency_key") or uuid.uuid4().hex)
    except (FormInvalid, AppError) as exc:
        status, headers, errors = _refusal(exc, t, "amount_usd")
        if isinstance(exc, FormInvalid):
            errors = exc.errors
        return await _balance_page(request, caller, None, errors=errors, form=form,
                                   http_status=status, headers=headers)
    return see_other(f"/app/invoices/{invoice['id']}")


@router.get("/invoices")
async def invoices(request: Request, caller: SignedIn, cursor: str | None = None):
    pages = Pages(request)
    page, plans = await asyncio.gather(pages.invoices(caller, cursor), pages.plans(caller))
    return render(request, "panel/invoices.html", invoices=page["invoices"],
                  next_cursor=page.get("next_cursor"), plans={p["id"]: p for p in plans})


async def _invoice_view(request: Request, caller, invoice_id: str) -> dict:
    pages = Pages(request)
    invoice, plans = await asyncio.gather(pages.invoice(caller, invoice_id), pages.plans(caller))
    plan = next((p for p in plans if p["id"] == invoice["plan_id"]), None)
    subscription = None
    if invoice["status"] == "PAID" and invoice.get("kind") != "TOP_UP":
        # The time this invoice bought, once the provisioner has it: its grant's own expiry
        # (a later purchase or an early renewal would make the subscription's misleading).
        grant = await pages.applied_grant(caller, invoice["id"])
        subscription = {"expires_at": grant["new_expires_at"]} if grant else None
    target = views.payment_target(invoice)
    qr = qr_svg(target, translator(request)("invoice.qr_title")) if target else None
    return {"invoice": invoice, "plan": plan, "subscription": subscription, "qr": qr,
            "version": views.invoice_version(invoice, subscription)}


@router.get("/invoices/{invoice_id}")
async def invoice_page(request: Request, caller: SignedIn, invoice_id: str):
    return render(request, "panel/invoice.html", **await _invoice_view(request, caller,
                                                                       invoice_id))


@router.get("/invoices/{invoice_id}/status")
async def invoice_status(request: Request, caller: SignedIn, invoice_id: str, v: str = ""):
    view = await _invoice_view(request, caller, invoice_id)
    if v and v == view["version"]:
        return Response(status_code=204)
    return render(request, "panel/_invoice_status.html", **view)


@router.post("/invoices/{invoice_id}/simulate-payment")
async def simulate_payment(request: Request, caller: SignedIn, form: Form, invoice_id: str):
    await Pages(request).simulate_payment(caller, invoice_id)
    if _is_htmx(request):
        return render(request, "panel/_invoice_status.html",
                      **await _invoice_view(request, caller, invoice_id))
    return see_other(f"/app/invoices/{invoice_id}?done=payment_sent")


@router.post("/invoices/{invoice_id}/cancel")
async def cancel_invoice(request: Request, caller: SignedIn, form: Form, invoice_id: str):
    await Pages(request).cancel_invoice(caller, invoice_id)
    return see_other(f"/app/invoices/{invoice_id}?done=invoice_canceled")


@router.get("/tickets")
async def tickets(request: Request, caller: SignedIn, status: str | None = None,
                  cursor: str | None = None):
    page = await Pages(request).tickets(caller, views.ticket_status(status), cursor)
    return render(request, "panel/tickets.html", tickets=page["tickets"],
                  next_cursor=page.get("next_cursor"), status=views.ticket_status(status))


@router.get("/tickets/new")
async def new_ticket(request: Request, caller: SignedIn):
    return render(request, "panel/ticket_new.html", errors={}, values={})


@router.post("/tickets")
async def open_ticket(request: Request, caller: SignedIn, form: Form):
    status, headers = 400, None
    try:
        body = validate(TicketCreate, form, translator(request))
        ticket = await Pages(request).open_ticket(caller, body)
    except FormInvalid as exc:
        errors = exc.errors
    except AppError as exc:
        errors = refusal_errors(exc, translator(request))
        status, headers = exc.status, exc.headers  # a 429 keeps its Retry-After
    else:
        return see_other(f"/app/tickets/{ticket['id']}?done=ticket_opened")
    return render(request, "panel/ticket_new.html", http_status=status, headers=headers,
                  errors=errors, values=form)


@router.get("/tickets/{ticket_id}")
async def ticket(request: Request, caller: SignedIn, ticket_id: str):
    found = await Pages(request).ticket(caller, ticket_id)
    return render(request, "panel/ticket.html", ticket=found, errors={}, values={},
                  version=views.ticket_version(found))


@router.get("/tickets/{ticket_id}/thread")
async def ticket_thread(request: Request, caller: SignedIn, ticket_id: str, v: str = ""):
    found = await Pages(request).ticket(caller, ticket_id)
    return render_thread(request, found, v, f"/app/tickets/{ticket_id}/thread")


@router.post("/tickets/{ticket_id}/messages")
async def reply(request: Request, caller: SignedIn, form: Form, ticket_id: str):
    pages = Pages(request)
    files = await attachments.posted_files(request)
    try:
        if files:  # the text (optional then) and the files as one message
            await attachments.send_with_files(request, caller, ticket_id, form.get("body", ""),
                                              files)
        else:
            body = validate(MessageCreate, form, translator(request))
            await pages.reply(caller, ticket_id, body)  # a 429 page with Retry-After
    except FormInvalid as exc:
        found = await pages.ticket(caller, ticket_id)
        return render(request, "panel/ticket.html", http_status=400, ticket=found,
                      errors=exc.errors, values=form, version=views.ticket_version(found))
    return see_other(f"/app/tickets/{ticket_id}?done=reply_sent")


@router.post("/tickets/{ticket_id}/close")
async def close_ticket(request: Request, caller: SignedIn, form: Form, ticket_id: str):
    await Pages(request).close_ticket(caller, ticket_id)
    return see_other(f"/app/tickets/{ticket_id}?done=ticket_closed")


@router.get("/settings")
async def settings(request: Request, caller: SignedIn):
    return render(request, "panel/settings.html", link=None, errors={})


@router.post("/settings/telegram-link")
async def telegram_link(request: Request, caller: SignedIn, form: Form):
    try:
        link = await Pages(request).telegram_link(caller)
    except ServiceUnavailable:
        return render(request, "panel/settings.html", http_status=503, link=None,
                      errors={"telegram": translator(request)("settings.telegram_unavailable")})
    except RateLimited as exc:
        message = translator(request)("settings.telegram_rate_limited", seconds=exc.retry_after)
        return render(request, "panel/settings.html", http_status=429, headers=exc.headers,
                      link=None, errors={"telegram": message})
    qr = qr_svg(link["url"], translator(request)("settings.telegram_qr"))
    return render(request, "panel/settings.html", link=link, qr=qr, errors={})


@router.post("/settings/password")
async def change_password(request: Request, caller: SignedIn, form: Form):
    t = translator(request)
    try:
        body = validate(PasswordForm, form, t)
        await Pages(request).change_password(caller, body.current_password, body.new_password)
    except FormInvalid as exc:
        errors = exc.errors
    except AppError as exc:
        if exc.status >= 500:
            raise
        errors = password_errors(exc, t)
        if "current_password" in errors:
            errors["current_password"] = t("settings.wrong_password")
    else:
        return see_other("/app/settings?done=password_changed")
    return render(request, "panel/settings.html", http_status=400, link=None, errors=errors)
