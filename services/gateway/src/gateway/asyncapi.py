"""The event documentation the gateway serves next to `/api/v1/docs`.

`asyncapi.json` (next to this module, written by `make asyncapi`, never by hand) is the AsyncAPI
3.0 document of the whole system. `install_asyncapi` serves it as it is and as one server-rendered
page: every event with its producer, its consumer queues and its payload as a table, the envelope
once, and every consumer queue with the events it takes. The page has no script at all, so the
site's CSP holds; everything taken from the document is escaped by the template.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any
from urllib.parse import unquote

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup, escape

from gateway.web.i18n import Translator
from gateway.web.rendering import env

TEMPLATE = "asyncapi.html"


@cache
def document_bytes() -> bytes:
    """The committed combined document, read once."""
    return files("gateway").joinpath("asyncapi.json").read_bytes()


@dataclass
class Row:
    """One field of a schema table; nested fields are named by their path (`plan.name`)."""

    name: str
    type: str
    required: bool
    description: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass
class Event:
    key: str
    producer: str
    exchange: str
    schema: str
    consumers: list[tuple[str, str]]  # (queue, service)
    rows: list[Row]


@dataclass
class Queue:
    name: str
    service: str
    description: str
    takes: list[tuple[str, bool]]  # (routing key or pattern, documented here as an event)


class _Schemas:
    """Turns JSON Schemas of `components.schemas` into table rows, `$ref`s resolved."""

    def __init__(self, doc: dict[str, Any]):
        self.schemas = doc.get("components", {}).get("schemas", {})

    def resolve(self, schema: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        """(name, schema) of a `$ref` followed to its end, (None, schema) for anything else."""
        name, seen = None, set()
        while isinstance(schema, dict) and "$ref" in schema and schema["$ref"] not in seen:
            seen.add(schema["$ref"])
            name = unquote(schema["$ref"].rsplit("/", 1)[-1])
            schema = self.schemas.get(name, {})
        return name, schema if isinstance(schema, dict) else {}

    def type_of(self, schema: dict[str, Any]) -> str:
        name, target = self.resolve(schema)
        if name is not None:
            return f"object ({name})" if "properties" in target else self.type_of(target)
        for combinator, joiner in (("anyOf", " | "), ("oneOf", " | "), ("allOf", " & ")):
            if combinator in schema:
                return joiner.join(self.type_of(s) for s in schema[combinator])
        if "const" in schema:
            return f"const {json.dumps(schema['const'])}"
        kind = schema.get("type")
        if isinstance(kind, list):
            return " | ".join(kind)
        if kind == "array":
            return f"array of {self.type_of(schema['items'])}" if "items" in schema else "array"
        if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
            return f"object of {self.type_of(schema['additionalProperties'])}"
        return kind or "any"

    def _nested(self, schema: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """(path suffix, object schema) whose fields are listed under this field, if any."""
        _, target = self.resolve(schema)
        if "properties" in target:
            return "", target
        if target.get("type") == "array" and "items" in target:
            inner = self._nested(target["items"])
            return ("[]" + inner[0], inner[1]) if inner else None
        choices = [s for s in target.get("anyOf", target.get("oneOf", []))
                   if self.resolve(s)[1].get("type") != "null"]
        return self._nested(choices[0]) if len(choices) == 1 else None

    @staticmethod
    def notes(schema: dict[str, Any]) -> list[str]:
        out = []
        if "format" in schema:
            out.append(f"format: {schema['format']}")
        if "enum" in schema:
            out.append("one of: " + ", ".join(json.dumps(v) for v in schema["enum"]))
        for key, label in (("minimum", "minimum"), ("maximum", "maximum"),
                           ("exclusiveMinimum", "greater than"), ("exclusiveMaximum", "less than"),
                           ("minLength", "min length"), ("maxLength", "max length"),
                           ("minItems", "min items"), ("maxItems", "max items"),
                           ("pattern", "pattern"), ("default", "default")):
            if key in schema:
                value = schema[key]
                out.append(f"{label}: {value if isinstance(value, str) else json.dumps(value)}")
        return out

    def rows(self, schema: dict[str, Any], prefix: str = "",
             seen: frozenset[str] = frozenset()) -> list[Row]:
        name, target = self.resolve(schema)
        if name in seen:  # a recursive schema: its fields are listed once, further up
            return []
        seen = seen | {name} if name else seen
        required = set(target.get("required", []))
        out = []
        for prop, sub in target.get("properties", {}).items():
            _, shown = self.resolve(sub)
            text = sub.get("description") or shown.get("description") or ""
            out.append(Row(prefix + prop, self.type_of(sub), prop in required, text,
                           self.notes(sub) + [n for n in self.notes(shown)
                                              if n not in self.notes(sub)]))
            nested = self._nested(sub)
            if nested:
                out.extend(self.rows(nested[1], f"{prefix}{prop}{nested[0]}.", seen))
        return out


def _topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic binding: `*` is one word, `#` zero or more."""
    def match(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        if p[0] == "#":
            return match(p[1:], k) or (bool(k) and match(p, k[1:]))
        return bool(k) and p[0] in ("*", k[0]) and match(p[1:], k[1:])

    return match(pattern.split("."), key.split("."))


def _after(text: str, lead: str) -> str:
    """The word after `lead` in a channel description ("Published by billing. ...")."""
    found = re.search(re.escape(lead) + r"\s+([^\s.]+(?:\.[^\s.]+)*)\.", text)
    return found.group(1) if found else "?"


def _message_payload(doc: dict[str, Any], channel: dict[str, Any]) -> dict[str, Any]:
    messages = doc.get("components", {}).get("messages", {})
    for message in channel.get("messages", {}).values():
        ref = message.get("$ref", "")
        found = messages.get(unquote(ref.rsplit("/", 1)[-1])) if ref else message
        if found and "payload" in found:
            return found["payload"]
    return {}


def describe(doc: dict[str, Any]) -> dict[str, Any]:
    """What the page shows, taken from an AsyncAPI 3.0 document."""
    schemas = _Schemas(doc)
    channels = doc.get("channels", {})
    queues: list[Queue] = []
    events: list[Event] = []
    envelope: list[Row] = []
    publishers = {name: ch for name, ch in sorted(channels.items())
                  if ch.get("bindings", {}).get("amqp", {}).get("is") == "routingKey"}
    for op in sorted(doc.get("operations", {}).values(),
                     key=lambda o: o.get("channel", {}).get("$ref", "")):
        if op.get("action") != "receive":
            continue
        name = unquote(op.get("channel", {}).get("$ref", "").rsplit("/", 1)[-1])
        channel = channels.get(name, {})
        queue = channel.get("bindings", {}).get("amqp", {}).get("queue", {}).get("name", name)
        text = channel.get("description", "")
        service = _after(text, "Consumed by")
        purpose = re.sub(r"^Consumed by [^\s]+?\.\s*", "", text)
        keys = op.get("bindings", {}).get("amqp", {}).get("cc", []) or [channel.get("address")]
        queues.append(Queue(queue, service, purpose,
                            [(k, k in publishers) for k in keys if k]))
    for key, channel in publishers.items():
        schema_name, event_schema = schemas.resolve(_message_payload(doc, channel))
        payload = event_schema.get("properties", {}).get("payload")
        if payload is not None:  # an envelope, the same for every event: listed once
            if not envelope:
                envelope = [r if r.name != "payload" else
                            Row(r.name, "object", r.required, "The event's own fields, listed "
                                "with each event below.")
                            for r in schemas.rows(event_schema)
                            if not r.name.startswith(("payload.", "payload[]."))]
            payload_name, _ = schemas.resolve(payload)
            rows = schemas.rows(payload)
        else:
            payload_name, rows = schema_name, schemas.rows(event_schema)
        exchange = channel.get("bindings", {}).get("amqp", {}).get("exchange", {}).get("name", "")
        consumers = [(q.name, q.service) for q in queues
                     if any(_topic_matches(k, key) for k, _ in q.takes)]
        events.append(Event(key, _after(channel.get("description", ""), "Published by"),
                            exchange, payload_name or "", consumers, rows))
    return {"info": doc.get("info", {}), "asyncapi": doc.get("asyncapi", ""),
            "servers": doc.get("servers", {}), "events": events, "queues": queues,
            "envelope": envelope}


def code_spans(text: str) -> Markup:
    """`text` escaped, with its `backticked` parts as <code> (the documents' descriptions use
    Markdown's code spans and nothing else of it)."""
    parts = str(text).split("`")
    if len(parts) % 2 == 0:  # an unmatched backtick: shown as it is
        return escape(text)
    return Markup("").join(escape(p) if i % 2 == 0 else Markup("<code>%s</code>") % p
                           for i, p in enumerate(parts))


def breakable(text: str) -> Markup:
    """`text` escaped, with line break opportunities after its dots and underscores: routing
    keys and field paths wrap there on a phone rather than anywhere."""
    return Markup(str(escape(text)).replace(".", ".<wbr>").replace("_", "_<wbr>"))


def render_page(doc: dict[str, Any], *, json_url: str, docs_url: str) -> str:
    """The HTML page of `doc` (no script; every text from the document escaped)."""
    return env.get_template(TEMPLATE).render(json_url=json_url, docs_url=docs_url,
                                             site_name=Translator("en")("site.name"),
                                             code_spans=code_spans, breakable=breakable,
                                             **describe(doc))


def install_asyncapi(app: FastAPI, prefix: str, docs_url: str) -> None:
    """`prefix + "/asyncapi.json"`: the committed document as it is; `prefix + "/asyncapi"`: its
    page, rendered once, linking to it and to the Swagger UI at `docs_url`. Neither is part of
    the OpenAPI document."""
    json_url, page_url = f"{prefix}/asyncapi.json", f"{prefix}/asyncapi"

    @cache
    def page() -> str:
        return render_page(json.loads(document_bytes()), json_url=json_url, docs_url=docs_url)

    @app.get(json_url, include_in_schema=False)
    async def asyncapi_json() -> Response:
        return Response(document_bytes(), media_type="application/json")

    @app.get(page_url, include_in_schema=False)
    async def asyncapi_page() -> HTMLResponse:
        return HTMLResponse(page())
