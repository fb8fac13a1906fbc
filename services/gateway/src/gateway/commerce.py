"""What the gateway does across services for commerce: the free trial, which billing grants (a
TRIAL invoice paid at zero) and the provisioner applies like any paid invoice."""

from __future__ import annotations

import asyncio
import time

from gateway.clients import Clients, Who

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
