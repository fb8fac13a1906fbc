"""The AsyncAPI documents: committed and current (`make asyncapi`), and complete: every event of
the catalogue with its payload schema and its producer, every consumer queue with the routing
keys it is bound to, as the workers really declare them."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote

import asyncapi as generator  # deploy/local/asyncapi.py (on sys.path through the conftest)
import pytest

from billing.__main__ import definition as billing
from contracts import registry
from gateway.__main__ import definition as gateway
from provisioner.__main__ import definition as provisioner
from runtime.broker import Broker
from runtime.db import Database
from runtime.service import build_worker_context
from telegram.__main__ import definition as telegram
from tickets.__main__ import definition as tickets

PRODUCERS = {"identity": "gateway", "billing": "billing", "provisioning": "provisioner",
             "tickets": "tickets", "telegram": "telegram"}


@pytest.fixture(scope="module")
def files():
    return generator.generate()


@pytest.fixture(scope="module")
def combined(files):
    return files[generator.DOCS / "combined.json"]


def test_the_committed_documents_are_current(files):
    assert generator.stale(files) == [], "run `make asyncapi` and commit the result"


def test_the_gateway_serves_the_same_combined_document_as_the_docs(files):
    assert files[generator.GATEWAY_COPY] == files[generator.DOCS / "combined.json"]


def _schema(doc: dict, ref: str) -> dict:
    return doc["components"]["schemas"][unquote(ref.rsplit("/", 1)[-1])]


def test_every_event_has_its_payload_schema_and_its_producer(combined):
    for key, model in registry.items():
        channel = combined["channels"].get(key)
        assert channel is not None, f"{key}: no publisher in any service's document"
        producer = PRODUCERS[model.event_type.split(".", 1)[0]]
        assert channel["description"].startswith(f"Published by {producer}."), key
        op = combined["operations"][key]
        assert op["action"] == "send"
        assert op["bindings"]["amqp"]["deliveryMode"] == 2  # persistent
        message = combined["components"]["messages"][f"{key}:Message"]
        envelope = _schema(combined, message["payload"]["$ref"])
        payload = _schema(combined, envelope["properties"]["payload"]["$ref"])
        assert set(payload["properties"]) == set(model.model_fields), key


def test_every_consumer_queue_lists_the_keys_it_is_bound_to(combined):
    async def declared(defn) -> dict[str, list[str]]:
        settings = defn.settings_factory()
        db = Database(settings)
        broker = Broker("amqp://unused/", service=defn.name)
        ctx = await build_worker_context(defn, settings, db, broker)
        for q in ctx.queues:
            await q.close()
        await db.dispose()
        return {s.queue: sorted(s.handlers) for s in ctx.subscriptions}

    async def every() -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for defn in (billing, gateway, provisioner, telegram, tickets):
            out.update(await declared(defn))
        return out

    # A loop of its own in a thread: the browser tests before this one leave one running here.
    with ThreadPoolExecutor(1) as pool:
        queues = pool.submit(asyncio.run, every()).result()
    received = {name: op for name, op in combined["operations"].items()
                if op["action"] == "receive"}
    assert set(received) == set(queues)
    for name, keys in queues.items():
        assert received[name]["bindings"]["amqp"]["cc"] == keys
        for key in keys:
            assert f"{name} (" in combined["channels"][key]["description"], (name, key)


def test_the_documents_name_no_machine(files):
    for path, doc in files.items():
        text = json.dumps(doc)
        assert "localhost" not in text and "127.0.0.1" not in text, path
