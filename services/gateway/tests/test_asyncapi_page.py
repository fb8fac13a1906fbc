"""`/api/v1/asyncapi.json` serves the committed AsyncAPI document byte for byte, and
`/api/v1/asyncapi` is its page: every contract with its producer and payload fields, every queue
with the events it takes, no script under the site's CSP, and the document's text escaped."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from contracts import registry
from gateway.app import create_api
from gateway.asyncapi import _topic_matches, breakable, render_page

COMMITTED = Path(__file__).parents[1] / "src" / "gateway" / "asyncapi.json"
# Events are named after their producer's context; identity is the gateway's.
PRODUCERS = {"identity": "gateway", "billing": "billing", "provisioning": "provisioner",
             "tickets": "tickets", "telegram": "telegram"}


@pytest.fixture
async def client(gateway_settings):
    app = create_api(gateway_settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://gw") as c:
        yield c
    await app.state.clients.close()


@pytest.fixture
async def page(client) -> httpx.Response:
    r = await client.get("/api/v1/asyncapi")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    return r


def section(html: str, anchor: str) -> str:
    """The `<section id=anchor>` of the page (none of those the tests read holds another), its
    line break opportunities (`<wbr>`, after dots and underscores) left out."""
    found = re.search(rf'<section id="{re.escape(anchor)}"(.*?)</section>', html, re.S)
    assert found, f"no section #{anchor}"
    return found.group(1).replace("<wbr>", "")


async def test_the_document_is_the_committed_file_as_it_is(client):
    r = await client.get("/api/v1/asyncapi.json")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.content == COMMITTED.read_bytes()
    assert r.json()["asyncapi"].startswith("3.")


async def test_neither_is_in_the_openapi_document(client):
    paths = (await client.get("/api/v1/openapi.json")).json()["paths"]
    assert not [p for p in paths if "asyncapi" in p]


async def test_every_contract_is_on_the_page_with_its_producer_and_payload_fields(page):
    html = page.text
    toc = re.search(r'<nav class="card" aria-labelledby="toc">(.*?)</nav>', html, re.S).group(1)
    toc = toc.replace("<wbr>", "")
    for key, model in registry.items():
        assert f'href="#event-{key}"' in toc, key
        event = section(html, f"event-{key}")
        producer = PRODUCERS[key.split(".", 1)[0]]
        assert re.search(rf"<dt>Producer</dt><dd>{producer}</dd>", event), key
        names = [f.alias or name for name, f in model.model_fields.items()]
        missing = [n for n in names if f"<code>{n}</code>" not in event]
        assert not missing, (key, missing)


async def test_nested_payload_objects_are_listed_field_by_field(page):
    paid = section(page.text, "event-billing.invoice.paid.v1")
    assert "<code>object (PlanSnapshot)</code>" in paid
    assert "<code>plan.price_usd</code>" in paid
    assert "format: date-time" in paid


async def test_the_envelope_is_described_once(page):
    envelope = section(page.text, "envelope")
    for name in ("event_id", "type", "version", "occurred_at", "producer", "payload",
                 "correlation_id", "causation_id"):
        assert f"<code>{name}</code>" in envelope
    # and not again with each event
    assert "<code>event_id</code>" not in section(page.text, "event-billing.invoice.paid.v1")


async def test_a_queue_lists_the_events_it_takes_and_each_event_its_queues(page):
    queue = section(page.text, "queue-provisioner.billing-events")
    assert "<dt>Service</dt><dd>provisioner</dd>" in queue
    for key in ("billing.invoice.paid.v1", "billing.invoice.refunded.v1"):
        assert f'<a href="#event-{key}"><code>{key}</code></a>' in queue
    assert "billing.invoice.created.v1" not in queue
    paid = section(page.text, "event-billing.invoice.paid.v1")
    assert '<a href="#queue-provisioner.billing-events">' in paid
    assert "no queue yet" in section(page.text, "event-billing.balance.debited.v1")


async def test_the_page_links_the_document_and_the_rest_docs(page):
    assert 'href="/api/v1/asyncapi.json"' in page.text
    assert 'href="/api/v1/docs"' in page.text
    assert 'name="viewport"' in page.text


async def test_the_page_has_no_script_under_the_sites_csp(client, page):
    site = await client.get("/login")
    csp = page.headers["content-security-policy"]
    assert csp == site.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "<script" not in page.text.lower()
    assert not re.search(r"<[^>]*\son\w+\s*=", page.text)  # no event handler attributes


def test_text_from_the_document_is_escaped():
    doc = {
        "asyncapi": "3.0.0",
        "info": {"title": "T <i>x</i>", "version": "1", "description": "use `a<b>`"},
        "channels": {
            "ctx.thing.done.v1": {
                "address": "ctx.thing.done.v1", "description": "Published by svc. Consumed by: q.",
                "bindings": {"amqp": {"is": "routingKey", "exchange": {"name": "events"}}},
                "messages": {"Message": {"$ref": "#/components/messages/m"}}},
            "svc.q": {
                "address": "ctx.thing.done.v1",
                "description": "Consumed by other. Does <script>alert(1)</script>.",
                "bindings": {"amqp": {"is": "queue", "queue": {"name": "svc.q"}}},
                "messages": {"SubscribeMessage": {"$ref": "#/components/messages/m"}}},
        },
        "operations": {
            "svc.q": {"action": "receive", "channel": {"$ref": "#/channels/svc.q"},
                      "bindings": {"amqp": {"cc": ["ctx.thing.done.v1"]}}},
        },
        "components": {
            "messages": {"m": {"payload": {"$ref": "#/components/schemas/Event%5BDoneV1%5D"}}},
            "schemas": {
                "Event[DoneV1]": {"type": "object", "required": ["payload"], "properties": {
                    "payload": {"$ref": "#/components/schemas/DoneV1"}}},
                "DoneV1": {"type": "object", "required": ["note"], "properties": {
                    "note": {"type": "string", "description": "a <b>bold</b> claim"},
                    "tags": {"type": "array", "items": {"type": "string"}}}},
            },
        },
    }
    html = render_page(doc, json_url="/j", docs_url="/d")
    assert "a &lt;b&gt;bold&lt;/b&gt; claim" in html and "<b>" not in html
    assert "T &lt;i&gt;x&lt;/i&gt;" in html and "<i>" not in html
    assert "<code>a&lt;b&gt;</code>" in html  # code spans, their text escaped too
    assert "<script" not in html
    assert breakable("<b>.x_y") == "&lt;b&gt;.<wbr>x_<wbr>y"  # names wrap at dots, escaped
    event = section(html, "event-ctx.thing.done.v1")
    assert "<dt>Producer</dt><dd>svc</dd>" in event
    assert "<code>array of string</code>" in event
    assert '<a href="#queue-svc.q">' in event
    assert '<a href="#event-ctx.thing.done.v1">' in section(html, "queue-svc.q")


@pytest.mark.parametrize(("pattern", "key", "matches"), [
    ("billing.invoice.paid.v1", "billing.invoice.paid.v1", True),
    ("billing.invoice.paid.v1", "billing.invoice.paid.v2", False),
    ("billing.#", "billing.invoice.paid.v1", True),
    ("billing.#", "billings.invoice.paid.v1", False),
    ("#.v1", "v1", True),
    ("*.invoice.*.v1", "billing.invoice.paid.v1", True),
    ("*.invoice.*", "billing.invoice.paid.v1", False),
])
def test_a_queue_takes_the_events_its_bindings_match(pattern, key, matches):
    assert _topic_matches(pattern, key) is matches
