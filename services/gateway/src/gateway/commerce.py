"""What the gateway does across services for commerce: the free trial, which billing grants (a
TRIAL invoice paid at zero) and the provisioner applies like any paid invoice; the auto-renewal
switch, whose plan billing sells and the provisioner keeps."""

from __future__ import annotations

import asyncio
import time

from contracts.public.subscriptions import AutoRenewBody
from gateway.clients import Clients, Who
from runtime.errors import ValidationFailed

TRIAL_PLAN_ID = "trial"


async def start_trial(clients: Clients, who: Who, *,
                      wait_seconds: float = 8.0) -> tuple[int, dict]:
    """201 with the trial's subscription once the provisioner has it; 202 with the trial's
    invoice while it is still being applied (it will be: the invoice is paid). The wait stays
    well under what a client waits for an answer. Billing's 409 `TRIAL_UNAVAILABLE` is raised
    as it is."""
    invoice = (await clients.billing.trial(who)).data.invoice
    deadline = time.monotonic() + wait_seconds
    while True:
        subscriptions = (await clients.provisioner.subscriptions(who)).data.subscriptions
        granted = [s for s in subscriptions if s.plan_id == TRIAL_PLAN_ID]  # one per person
        if granted:
            return 201, {"subscription": granted[0].model_dump(mode="json")}
        if time.monotonic() >= deadline:
            return 202, {"invoice": invoice.model_dump(mode="json")}
        await asyncio.sleep(0.25)


async def set_auto_renew(clients: Clients, who: Who, subscription_id: str,
                         body: AutoRenewBody) -> dict:
    """Turn auto-renewal on or off; a `plan_id` must be a plan on sale (400 otherwise)."""
    if body.plan_id is not None:
        plans = (await clients.billing.plans(who)).data.plans
        if body.plan_id not in {p.id for p in plans}:
            raise ValidationFailed("Unknown or inactive plan", {"plan_id": body.plan_id})
    reply = await clients.provisioner.set_auto_renew(who, subscription_id, body)
    return reply.data.model_dump(mode="json")
