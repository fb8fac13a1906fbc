"""`/api/v1/openapi.json` is the public contract: served while billing cannot answer, and, once it
can, with the payment options billing accepts as the enums of `asset` and `network`."""

from __future__ import annotations

import httpx
import pytest

from gateway.app import create_api


@pytest.fixture
async def app(gateway_settings):
    application = create_api(gateway_settings)
    yield application
    await application.state.clients.close()


async def test_the_document_names_the_payment_options_billing_accepts(app, services):
    services.set("billing", "GET", r"/internal/payment-options", 500, {"oops": True})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://gw") as c:
        r = await c.get("/api/v1/openapi.json")
        assert r.status_code == 200
        plain = r.json()["components"]["schemas"]["InvoiceCreate"]["properties"]["asset"]
        assert "enum" not in plain and plain["type"] == "string"
        services.overrides.clear()
        doc = (await c.get("/api/v1/openapi.json")).json()
    invoice = doc["components"]["schemas"]["InvoiceCreate"]["properties"]
    assert invoice["asset"]["enum"] == ["USDT"] and invoice["network"]["enum"] == ["TRON"]
    assert invoice["provider"]["anyOf"][0]["enum"] == ["sandbox", "btcpay"]
    # two providers take the same pair: it is one pair of the document
    assert len(doc["components"]["schemas"]["InvoiceCreate"]["anyOf"]) == 1
