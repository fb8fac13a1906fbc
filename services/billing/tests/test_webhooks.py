"""Provider webhooks through the provider interface, against the billing API and a real
database: the provider named in the path verifies the delivery from the raw body and the
headers the gateway relays, unknown providers are 404, and a provider added to the registry in
`billing.wiring` is served with no change to the webhook code."""

from __future__ import annotations

import hmac
import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from billing import wiring
from billing.app import create_api
from billing.providers.base import Headers, WebhookDelivery, json_object, text_field
from billing.providers.btcpay import sign as btcpay_sign
from runtime import identity
from runtime.errors import ValidationFailed

from .conftest import make_settings

SECRET = "webhook-test-secret"
SIGNING_KEY = "dev-internal-signing-key-change-me"


def relayed() -> dict[str, str]:
    """The signed identity the gateway's relay adds (fresh: a signature is good for a while)."""
    return {identity.HEADER: identity.sign(SIGNING_KEY, "gateway", "SERVICE", audience="billing")}


class TestpayWebhooks:
    """A provider of this test's own: a shared token in a header, its own body fields."""

    name = "testpay"

    def verify(self, body: bytes, headers: Headers) -> bool:
        return hmac.compare_digest(headers.get("X-Testpay-Token", "").encode(), b"let-me-in")

    def parse(self, body: bytes) -> WebhookDelivery:
        data = json_object(body)
        delivery_id = text_field(data, "id")
        if delivery_id is None:
            raise ValidationFailed("id is required", {"field": "id"})
        return WebhookDelivery(delivery_id, text_field(data, "event"), text_field(data, "ref"))


async def client_for(settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_api(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://billing") as client:
        yield client
    await app.state.db.dispose()


@pytest.fixture
async def billing(migrated) -> AsyncIterator[httpx.AsyncClient]:
    async for client in client_for(make_settings(BTCPAY_WEBHOOK_SECRET=SECRET)):
        yield client


@pytest.fixture
async def with_testpay(migrated, monkeypatch) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setattr(wiring, "PROVIDERS", {**wiring.PROVIDERS, "testpay": wiring.Registration(
        wiring.PROVIDERS["sandbox"].build, lambda settings: TestpayWebhooks())})
    async for client in client_for(make_settings(BTCPAY_WEBHOOK_SECRET=SECRET)):
        yield client


def btcpay_delivery() -> tuple[str, bytes]:
    delivery = uuid.uuid4().hex
    return delivery, json.dumps({"deliveryId": delivery, "type": "InvoiceSettled",
                                 "invoiceId": f"ref-{delivery}", "storeId": "s"}).encode()


async def stored(pg, provider: str, delivery: str) -> list[dict]:
    rows = await pg.fetch("SELECT event_type, provider_ref, outcome FROM billing.provider_events"
                          " WHERE provider = $1 AND delivery_id = $2", provider, delivery)
    return [dict(r) for r in rows]


@pytest.mark.parametrize("header", ["BTCPay-Sig", "btcpay-sig", "BTCPAY-SIG"])
async def test_the_provider_reads_its_signature_from_the_relayed_headers(billing, pg, header):
    delivery, body = btcpay_delivery()
    r = await billing.post("/internal/webhooks/btcpay", content=body, headers={
        **relayed(), "Content-Type": "application/json", "User-Agent": "BTCPayServer",
        header: btcpay_sign(SECRET, body)})
    assert (r.status_code, r.json()) == (200, {"ok": True})
    assert await stored(pg, "btcpay", delivery) == [
        {"event_type": "InvoiceSettled", "provider_ref": f"ref-{delivery}",
         "outcome": "unknown_invoice"}]


async def test_a_signature_in_another_header_is_no_signature(billing, pg):
    delivery, body = btcpay_delivery()
    r = await billing.post("/internal/webhooks/btcpay", content=body, headers={
        **relayed(), "X-Signature": btcpay_sign(SECRET, body)})
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHENTICATED"
    assert await stored(pg, "btcpay", delivery) == []


@pytest.mark.parametrize("provider", ["sandbox", "nopay", "testpay"])
async def test_a_provider_without_webhooks_is_not_found(billing, provider):
    _, body = btcpay_delivery()
    r = await billing.post(f"/internal/webhooks/{provider}", content=body, headers={
        **relayed(), "BTCPay-Sig": btcpay_sign(SECRET, body), "X-Testpay-Token": "let-me-in"})
    assert r.status_code == 404


@pytest.mark.parametrize("body,field", [
    (b"[1, 2]", None),
    (b'{"type": "InvoiceSettled"}', "deliveryId"),
    (json.dumps({"deliveryId": "a\u0000b"}).encode(), None),  # the input guard's 400
    (json.dumps({"deliveryId": "d" * 201}).encode(), "deliveryId"),
    (json.dumps({"deliveryId": "ok", "invoiceId": 5}).encode(), "invoiceId"),
])
async def test_a_signed_body_that_names_no_delivery_is_refused(billing, body, field):
    r = await billing.post("/internal/webhooks/btcpay", content=body, headers={
        **relayed(), "BTCPay-Sig": btcpay_sign(SECRET, body)})
    assert r.status_code == 400 and r.json()["code"] == "VALIDATION_ERROR", r.text
    if field is not None:
        assert r.json()["details"]["field"] == field


async def test_a_provider_added_to_the_registry_is_served(with_testpay, pg):
    delivery = uuid.uuid4().hex
    body = json.dumps({"id": delivery, "event": "paid", "ref": "tp-1"}).encode()
    r = await with_testpay.post("/internal/webhooks/testpay", content=body,
                                headers={**relayed(), "X-Testpay-Token": "wrong"})
    assert r.status_code == 401
    for _ in range(2):  # a redelivery is answered the same and stored once
        r = await with_testpay.post("/internal/webhooks/testpay", content=body,
                                    headers={**relayed(), "x-testpay-token": "let-me-in"})
        assert (r.status_code, r.json()) == (200, {"ok": True})
    assert await stored(pg, "testpay", delivery) == [
        {"event_type": "paid", "provider_ref": "tp-1", "outcome": "unknown_invoice"}]
    # btcpay is still served next to it
    delivery, body = btcpay_delivery()
    r = await with_testpay.post("/internal/webhooks/btcpay", content=body,
                                headers={**relayed(), "BTCPay-Sig": btcpay_sign(SECRET, body)})
    assert r.status_code == 200


def test_each_source_is_registered_under_the_name_it_declares():
    sources = wiring.build_webhook_sources(make_settings())
    names = {name: source.name for name, source in sources.items()}
    assert names == {name: name for name in names}
    assert {"btcpay", "nowpayments"} <= set(names)
