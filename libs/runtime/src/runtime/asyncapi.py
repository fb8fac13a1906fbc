"""AsyncAPI documents of the events: each service's, read from its worker's FastStream broker
(what it consumes, what its outbox publishes), and the combined one of the whole system.

`python -m <service> asyncapi` prints a service's document. The documents are built from the
same `WorkerContext` the worker runs, without connecting to anything, and name RabbitMQ by its
deployment host so they read the same on every machine.
"""

from __future__ import annotations

import copy
from typing import Any

from faststream.specification import AsyncAPI

from runtime.broker import Broker
from runtime.db import Database
from runtime.service import ServiceDefinition, build_worker_context
from runtime.settings import ServiceSettings

DOCUMENTED_URL = "amqp://rabbitmq:5672/"
VERSION = "1.0.0"


async def service_document(defn: ServiceDefinition, settings: ServiceSettings) -> dict[str, Any]:
    """The service's AsyncAPI 3.0 document: its consumer queues and the events it publishes."""
    db = Database(settings)
    broker = Broker(DOCUMENTED_URL, "", settings.delivery_limit, service=defn.name)
    try:
        ctx = await build_worker_context(defn, settings, db, broker)
        for close in ctx.on_close:
            await close()
        for queue in ctx.queues:
            await queue.close()
    finally:
        await db.dispose()
    spec = AsyncAPI(broker.rabbit, title=f"{defn.name} events", version=VERSION,
                    description=f"What the {defn.name} worker consumes and publishes.")
    doc = spec.to_specification().to_jsonable()
    for sub in broker.subscriptions:
        # FastStream names the queue's first binding; the queue is bound to every key it takes.
        doc["operations"][sub.queue]["bindings"]["amqp"]["cc"] = sorted(sub.handlers)
    return doc


def combine(documents: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One document of every service's: each event once, with its producer and the queues that
    consume it (named in its channel's description)."""
    out: dict[str, Any] = {
        "asyncapi": "3.0.0",
        "info": {"title": "VPN service events", "version": VERSION,
                 "description": "Every integration event: its payload, who publishes it and "
                                "which queues consume it."},
        "defaultContentType": "application/json",
        "servers": {}, "channels": {}, "operations": {},
        "components": {"messages": {}, "schemas": {}},
    }
    consumers: dict[str, list[str]] = {}
    for name in sorted(documents):
        doc = copy.deepcopy(documents[name])
        out["servers"].update(doc.get("servers", {}))
        out["channels"].update(doc.get("channels", {}))
        out["operations"].update(doc.get("operations", {}))
        for part in ("messages", "schemas"):
            out["components"][part].update(doc.get("components", {}).get(part, {}))
        for op_name, op in doc.get("operations", {}).items():
            if op.get("action") == "receive":
                for key in op.get("bindings", {}).get("amqp", {}).get("cc", []):
                    consumers.setdefault(key, []).append(f"{op_name} ({name})")
    for op_name, op in out["operations"].items():
        if op.get("action") != "send":
            continue
        channel = out["channels"][op["channel"]["$ref"].rsplit("/", 1)[-1]]
        takers = sorted(consumers.get(op_name, []))
        channel["description"] = (f"{channel.get('description', '')} Consumed by: "
                                  f"{', '.join(takers) if takers else 'no queue yet'}.").strip()
    return out
