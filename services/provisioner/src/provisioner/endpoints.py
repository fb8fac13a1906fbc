"""Internal HTTP API of the provisioner (called by the gateway with a signed identity)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response

from contracts.public.insight import ProvisionerStatsOut
from contracts.public.moves import DrainOut, LocationBody, LocationChange
from contracts.public.servers import ServerCreate, ServerEnvelope, ServerList, ServerUpdate
from provisioner.backends.remnawave import WebhookRejected, next_month_start, parse_webhook
from provisioner.backends.sandbox import SandboxBackend
from provisioner.jobs import list_failed_jobs, retry_failed_job
from provisioner.moves import MoveService
from provisioner.repository import ProvisioningRepository
from provisioner.schemas import (
    AccessOut,
    AdminSubscriptionEnvelope,
    AdminSubscriptionList,
    AdminSubscriptionOut,
    AutoRenewBody,
    BackendCapabilities,
    ExtendBody,
    FailedJobList,
    GrantOut,
    RetriedJob,
    SandboxFaultBody,
    SandboxTrafficBody,
    SubscriptionEnvelope,
    SubscriptionList,
    SubscriptionStatus,
    UsageOut,
    WebhookAck,
)
from provisioner.service import ProvisioningService
from provisioner.stats import StatsRepository
from runtime.clock import now
from runtime.deps import Admin, Ident, Session
from runtime.errors import NotFound, Unauthenticated
from runtime.logging import get_logger
from runtime.periods import PeriodQuery

log = get_logger(__name__)

router = APIRouter(prefix="/internal")


async def service(request: Request) -> ProvisioningService:
    return request.app.state.service


Service = Annotated[ProvisioningService, Depends(service)]
Limit = Annotated[int, Query(ge=1, le=100)]


def _admin_out(svc: ProvisioningService, sub) -> AdminSubscriptionOut:
    return AdminSubscriptionOut.model_validate(svc.view(sub))


@router.get("/subscriptions", response_model=SubscriptionList)
async def list_subscriptions(request: Request, ident: Ident, svc: Service):
    return {"subscriptions": await svc.list_own(request.app.state.db, ident)}


@router.get("/grants/{invoice_id}", response_model=GrantOut)
async def invoice_grant(invoice_id: str, s: Session, ident: Ident):
    """The caller's own paid invoice's grant (another user's, or none yet: 404)."""
    grant = await ProvisioningRepository(s).grant_by_invoice(invoice_id)
    if grant is None or grant.user_id != ident.user_id:
        raise NotFound("No grant for this invoice")
    return {"invoice_id": invoice_id, "status": grant.status,
            "subscription_id": grant.subscription_id, "new_expires_at": grant.new_expires_at}


@router.get("/subscriptions/{sub_id}/access", response_model=AccessOut)
async def subscription_access(request: Request, sub_id: str, s: Session, ident: Ident,
                              svc: Service):
    out = await svc.access(s, ident, sub_id)
    sub = await ProvisioningRepository(s).subscription(sub_id)
    return {**out, **request.app.state.links.view(sub.link_token)}


@router.put("/subscriptions/{sub_id}/auto-renew", response_model=SubscriptionEnvelope)
async def set_auto_renew(sub_id: str, body: AutoRenewBody, s: Session, ident: Ident,
                         svc: Service):
    sub = await svc.set_auto_renew(s, ident, sub_id, enabled=body.enabled,
                                   plan_id=body.plan_id, ts=now())
    return {"subscription": svc.view(sub)}


@router.get("/subscriptions/{sub_id}/usage", response_model=UsageOut)
async def subscription_usage(sub_id: str, s: Session, ident: Ident, svc: Service):
    return await svc.usage(s, ident, sub_id)


@router.get("/backend", response_model=BackendCapabilities)
async def backend_capabilities(ident: Ident, svc: Service):
    """What the configured VPN backend enforces itself (the gateway's plan pages ask)."""
    return {"backend": svc.backend.name, "enforces_devices": svc.backend.enforces_devices,
            "enforces_traffic": svc.backend.enforces_traffic}


@router.post("/webhooks/remnawave", response_model=WebhookAck)
async def remnawave_webhook(request: Request, s: Session, ident: Ident, svc: Service,
                            signature: Annotated[str | None,
                                                 Header(alias="X-Remnawave-Signature")] = None):
    """The Remnawave panel's signed webhook, relayed by the gateway as raw bytes: checked in
    constant time over those bytes with `REMNAWAVE_WEBHOOK_SECRET` (401 and nothing changed
    when it does not match); `user.limited` of one of ours marks it LIMITED, once."""
    secret = request.app.state.settings.remnawave_webhook_secret or ""
    try:
        event = parse_webhook(await request.body(), signature, secret)
    except WebhookRejected as exc:
        log.warning("remnawave_webhook_rejected", reason=str(exc))
        raise Unauthenticated("The webhook signature does not match") from None
    if event is not None and event.event == "user.limited":
        ts = now()
        await svc.panel_limited(s, event.ref, ts, next_month_start(ts))
    return {"ok": True}


@router.get("/admin/subscriptions", response_model=AdminSubscriptionList)
async def admin_list(s: Session, ident: Admin, svc: Service,
                     user_id: str | None = Query(None, max_length=64),
                     status: SubscriptionStatus | None = None, limit: Limit = 20,
                     cursor: str | None = Query(None, max_length=200)):
    rows, nxt = await ProvisioningRepository(s).page(user_id=user_id, status=status,
                                                     limit=limit, cursor=cursor)
    return {"subscriptions": [_admin_out(svc, r) for r in rows], "next_cursor": nxt}


@router.post("/admin/subscriptions/{sub_id}/extend", response_model=AdminSubscriptionEnvelope)
async def admin_extend(sub_id: str, body: ExtendBody, s: Session, ident: Admin, svc: Service):
    sub = await svc.admin_extend(s, sub_id, body.days, ident.user_id, now())
    return {"subscription": _admin_out(svc, sub)}


@router.post("/admin/subscriptions/{sub_id}/suspend", response_model=AdminSubscriptionEnvelope)
async def admin_suspend(sub_id: str, s: Session, ident: Admin, svc: Service):
    return {"subscription": _admin_out(svc, await svc.admin_suspend(s, sub_id, now()))}


@router.post("/admin/subscriptions/{sub_id}/resume", response_model=AdminSubscriptionEnvelope)
async def admin_resume(sub_id: str, s: Session, ident: Admin, svc: Service):
    return {"subscription": _admin_out(svc, await svc.admin_resume(s, sub_id, now()))}


@router.get("/admin/provision-jobs/failed", response_model=FailedJobList)
async def failed_jobs(request: Request, ident: Admin, limit: Limit = 50):
    jobs = await list_failed_jobs(request.app.state.db, request.app.state.jobs, limit)
    return {"jobs": jobs}


@router.post("/admin/provision-jobs/{job_id}/retry", status_code=202, response_model=RetriedJob)
async def retry_job(job_id: str, request: Request, ident: Admin, svc: Service):
    state = await retry_failed_job(request.app.state.db, request.app.state.jobs, svc, job_id)
    return {"id": job_id, "state": state}


def _sandbox(svc: ProvisioningService) -> SandboxBackend:
    if not isinstance(svc.backend, SandboxBackend):
        raise NotFound("The sandbox VPN backend is not in use")
    return svc.backend


@router.post("/sandbox/faults", status_code=201)
async def add_sandbox_fault(body: SandboxFaultBody, ident: Admin, svc: Service):
    fault_id = await _sandbox(svc).add_fault(body.operation, body.count, body.message)
    return {"id": fault_id}


@router.post("/sandbox/subscriptions/{sub_id}/traffic", response_model=UsageOut)
async def set_sandbox_traffic(sub_id: str, body: SandboxTrafficBody, s: Session, ident: Admin,
                              svc: Service):
    """The traffic a subscription's sandbox account has used (at its allowance: limited)."""
    sub = await ProvisioningRepository(s).subscription(sub_id)
    if sub is None:
        raise NotFound("Subscription not found")
    used = await _sandbox(svc).set_used(sub.provision_ref, body.used_bytes)
    return {"used_bytes": used.used_bytes, "limit_bytes": used.limit_bytes,
            "resets_at": used.resets_at, "limited": used.limited,
            "devices": {"limit": used.devices_limit, "used": used.devices_used},
            "fetched_at": now()}


@router.delete("/sandbox/faults", status_code=204)
async def clear_sandbox_faults(ident: Admin, svc: Service):
    await _sandbox(svc).clear_faults()
    return Response(status_code=204)


@router.get("/admin/stats", response_model=ProvisionerStatsOut)
async def admin_stats(s: Session, _: Admin, periods: PeriodQuery):
    """The provisioner's KPI figures per period (docs/06-adr/0008)."""
    return await StatsRepository(s).stats(periods)


# ---- the server pool (ADMIN) ------------------------------------------------------------------
ServerId = Annotated[str, Path(min_length=1, max_length=64)]


@router.get("/admin/servers", response_model=ServerList)
async def list_servers(s: Session, ident: Admin, svc: Service):
    return {"servers": await svc.pool.list(s)}


@router.post("/admin/servers", status_code=201, response_model=ServerEnvelope)
async def create_server(body: ServerCreate, s: Session, ident: Admin, svc: Service):
    return {"server": await svc.pool.create(s, body)}


@router.get("/admin/servers/{server_id}", response_model=ServerEnvelope)
async def get_server(server_id: ServerId, s: Session, ident: Admin, svc: Service):
    return {"server": await svc.pool.one(s, server_id)}


@router.patch("/admin/servers/{server_id}", response_model=ServerEnvelope)
async def update_server(server_id: ServerId, body: ServerUpdate, s: Session, ident: Admin,
                        svc: Service):
    return {"server": await svc.pool.update(s, server_id, body)}


# ---- moving an access (the customer's location, an admin's drain) ----------------------------
async def _queued(enqueue) -> None:
    """Queue the work just committed; if Redis refuses, the move sweep picks it up."""
    try:
        await enqueue
    except Exception as exc:
        log.warning("move_enqueue_failed", error=str(exc)[:200])


@router.put("/subscriptions/{sub_id}/location", response_model=LocationChange,
            responses={202: {"model": LocationChange}})
async def change_location(sub_id: Annotated[str, Path(min_length=1, max_length=64)],
                          body: LocationBody, request: Request, response: Response,
                          ident: Ident):
    """Move the caller's access to a server of `location_id` (`provisioner.moves`): 202 with
    the move (started, or the one under way there), 200 with no move when it is there
    already."""
    moves: MoveService = request.app.state.moves
    async with request.app.state.db.transaction() as s:
        move, what = await moves.change_location(s, ident, sub_id, body.location_id, now())
        out = await moves.view(s, move) if move is not None else None
    if what == "started":
        await _queued(request.app.state.jobs.move(move.id))
    response.status_code = 200 if move is None else 202
    return {"location_id": body.location_id, "move": out}


@router.post("/admin/servers/{server_id}/drain", status_code=202, response_model=DrainOut)
async def drain_server(server_id: ServerId, request: Request, ident: Admin):
    """DRAINING now (no new placements); every access on it is moved off, then DISABLED."""
    moves: MoveService = request.app.state.moves
    async with request.app.state.db.transaction() as s:
        out = await moves.drain(s, server_id, now())
    await _queued(request.app.state.jobs.drain(server_id))
    return out
