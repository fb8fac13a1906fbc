"""The typed clients over real HTTP (fake_services.py): the signed identity each call carries,
answers parsed into the public models, refusals raised as the service's own error with its
headers, a failed or unreachable service as 503, and a provider webhook's headers unable to
stand in for the signed identity."""

from __future__ import annotations

import pytest

from contracts.public.billing import InvoiceCreate
from gateway.clients import ANONYMOUS, Clients
from gateway.clients import ops as client_ops
from gateway.clients.base import Anonymous
from runtime import identity
from runtime.errors import AppError, ServiceUnavailable


class Who:
    id = "u1"
    role = "USER"


@pytest.fixture
async def clients(services):
    urls = {name: services.base_urls[name] for name in ("billing", "tickets", "provisioner",
                                                        "telegram")}
    c = Clients.connect(urls, services.settings()["INTERNAL_SIGNING_KEY"], 2.0)
    yield c
    await c.close()


async def test_a_call_carries_the_callers_signed_identity_for_that_service_only(clients,
                                                                               services):
    reply = await clients.billing.plans(Who())
    assert reply.data.plans[0].id == "p1"
    assert str(reply.data.plans[0].price_usd) == "4.99"
    call = services.calls[-1]
    assert (call.service, call.user_id, call.role) == ("billing", "u1", "USER")
    # the same header is refused by another service (its audience is billing)
    with pytest.raises(AppError) as refused:
        identity.verify(services.settings()["INTERNAL_SIGNING_KEY"],
                        call.headers[identity.HEADER], audience="tickets")
    assert refused.value.status == 401


async def test_a_refusal_is_the_services_own_error_with_its_retry_after(clients, services):
    services.set("billing", "POST", r"/internal/invoices", 429,
                 {"code": "RATE_LIMITED", "message": "Slow down", "details": {"n": 1}},
                 {"Retry-After": "7"})
    body = InvoiceCreate(plan_id="p1", asset="USDT", network="TRON")
    with pytest.raises(AppError) as exc:
        await clients.billing.create_invoice(Who(), body, "key-1")
    assert (exc.value.status, exc.value.code, exc.value.message) == (429, "RATE_LIMITED",
                                                                     "Slow down")
    assert exc.value.details == {"n": 1}
    assert exc.value.headers == {"Retry-After": "7"}
    assert services.calls[-1].headers["Idempotency-Key"] == "key-1"


async def test_a_failing_or_unreachable_service_is_unavailable(clients, services):
    services.set("tickets", "GET", r"/internal/tickets/[^/]+", 500, {"oops": True})
    with pytest.raises(ServiceUnavailable):
        await clients.tickets.ticket(Who(), "t1")
    await services.stop()
    with pytest.raises(ServiceUnavailable):
        await clients.provisioner.subscriptions(Who())


async def test_an_answer_that_breaks_the_public_model_is_not_passed_on(clients, services):
    services.set("provisioner", "GET", r"/internal/subscriptions", 200,
                 {"subscriptions": [{"id": "s1", "status": "SOMETHING_NEW"}]})
    reply = await clients.provisioner.subscriptions(Who())
    with pytest.raises(ValueError):
        reply.data  # noqa: B018 - parsing is what is tested


async def test_ids_from_the_caller_cannot_walk_the_internal_paths(clients, services):
    for walk in ("..", "."):
        with pytest.raises(AppError) as exc:
            await clients.billing.invoice(Who(), walk)
        assert exc.value.status == 404
    await clients.billing.invoice(Who(), "../admin/invoices")
    await clients.billing.invoice(Who(), "a/b c")
    assert [c.path for c in services.calls] == ["/internal/invoices/..%2Fadmin%2Finvoices",
                                                "/internal/invoices/a%2Fb%20c"]


async def test_a_webhooks_headers_cannot_replace_the_signed_identity(clients, services):
    forged = identity.sign(services.settings()["INTERNAL_SIGNING_KEY"], "evil", "ADMIN",
                           audience="billing")
    await clients.billing.webhook("btcpay", b'{"deliveryId": "d1", "type": "x"}',
                                  {"BTCPay-Sig": "sha256=ab", identity.HEADER: forged})
    call = services.calls[-1]
    assert (call.user_id, call.role) == ("btcpay", "SERVICE")
    assert call.headers["BTCPay-Sig"] == "sha256=ab"
    assert call.body == b'{"deliveryId": "d1", "type": "x"}'


async def test_readiness_reads_each_services_readyz(clients):
    status, body = await clients.tickets.ready()
    assert status == 200 and body == {"status": "ready"}
    assert ANONYMOUS == Anonymous()


async def test_ops_calls_send_the_callers_ids_as_single_segments(clients, services):
    with pytest.raises(AppError):
        await client_ops.retry_job(clients.billing, Who(), "payment_watch", "j?x=1/../a")
    with pytest.raises(AppError):
        await client_ops.replay(clients.billing, Who(), "d 1")
    assert [c.path for c in services.calls] == [
        "/internal/admin/jobs/payment_watch/j%3Fx%3D1%2F..%2Fa/retry",
        "/internal/admin/dead-letters/d%201/replay"]
