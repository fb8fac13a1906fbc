"""Input never yields a 5xx (issue "Hardening", items 6, 12, 13), through the real stack.

Every JSON body the gateway's OpenAPI document describes gets, field by field, a NUL and a lone
surrogate; paths, queries, cursors and web forms get NULs and tampered values; services are
called directly with identity headers that lack a claim or name another service; bodies over
the limit are sent chunked. Each answer is a 4xx with the `{code, message, details}` body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime

import httpx
import pytest

from runtime import identity
from runtime.keys import IDENTITY_HEADER, derive_key
from runtime.pagination import encode_cursor
from tests.conftest import register

BAD_VALUES = {"nul": "a\x00b", "lone_surrogate": "x\ud800y"}
# Answered 200 whatever they carry (the telegram service records what it cannot use).
EXEMPT = {"/api/v1/telegram/webhook"}
# Would end the shared session or change the shared admin if the guard ever let one through.
SKIP_FOR_ADMIN = ("/auth/logout", "/auth/login", "/auth/register", "/role", "/block")


def _resolve(doc: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _is_string(doc: dict, schema: dict) -> bool:
    schema = _resolve(doc, schema)
    options = schema.get("anyOf") or schema.get("oneOf") or [schema]
    return any(_resolve(doc, o).get("type") == "string" for o in options)


def _sample(doc: dict, schema: dict, depth: int = 0):
    """A plausible value for `schema` (the guard answers before validation, so rough is fine)."""
    schema = _resolve(doc, schema)
    options = schema.get("anyOf") or schema.get("oneOf")
    if options and "properties" not in schema:
        return _sample(doc, options[0], depth)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type") or ("object" if "properties" in schema else None)
    if kind == "object" and depth < 3:
        out = {k: _sample(doc, v, depth + 1) for k, v in schema.get("properties", {}).items()}
        if options:  # an object whose fields come in allowed combinations: take the first
            first = _sample(doc, {"type": "object", **_resolve(doc, options[0])}, depth)
            out.update(first if isinstance(first, dict) else {})
        return out
    return {"string": "x", "integer": 1, "number": 1, "boolean": True, "array": []}.get(kind)


def _string_fields(doc: dict, schema: dict, prefix: tuple = ()) -> list[tuple]:
    """Paths (tuples of keys) of every string field, nested objects included."""
    schema = _resolve(doc, schema)
    out = []
    for name, sub in schema.get("properties", {}).items():
        if _is_string(doc, sub):
            out.append((*prefix, name))
        elif _resolve(doc, sub).get("type") == "object" and len(prefix) < 2:
            out.extend(_string_fields(doc, sub, (*prefix, name)))
    return out


def _with(body: dict, field: tuple, value: str) -> dict:
    body = json.loads(json.dumps(body))
    target = body
    for key in field[:-1]:
        target = target.setdefault(key, {})
    target[field[-1]] = value
    return body


def _json_operations(doc: dict) -> list[tuple[str, str, dict]]:
    ops = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            schema = (op.get("requestBody", {}).get("content", {})
                      .get("application/json", {}).get("schema"))
            if method in {"post", "put", "patch"} and schema and path not in EXEMPT:
                ops.append((method.upper(), path, schema))
    return ops


def _concrete(path: str) -> str:
    """The path with every `{param}` set to an id that exists nowhere."""
    out = []
    for seg in path.split("/"):
        out.append("sandbox" if seg == "{provider}" else "nonexistent-id"
                   if seg.startswith("{") else seg)
    return "/".join(out)


def _assert_refused(r: httpx.Response, what: str) -> None:
    assert r.status_code == 400, (what, r.status_code, r.text)
    body = r.json()
    assert body["code"] == "VALIDATION_ERROR", (what, body)
    assert body["message"] and "details" in body, (what, body)


def test_every_string_field_of_every_json_body_refuses_nul_and_lone_surrogates(
        gateway_url, admin_client):
    doc = httpx.get(gateway_url + "/api/v1/openapi.json", timeout=15).json()
    ops = _json_operations(doc)
    assert len(ops) >= 10, [p for _, p, _ in ops]  # the document lists the writes
    customer = register(gateway_url)
    fed = 0
    for method, path, schema in ops:
        url = _concrete(path).removeprefix("/api/v1")
        base = _sample(doc, schema)
        fields = _string_fields(doc, schema)
        for field in fields:
            for label, value in BAD_VALUES.items():
                # ensure_ascii: a lone surrogate travels as the `\ud800` escape, as a client sends
                content = json.dumps(_with(base, field, value), ensure_ascii=True)
                for who, client in (("customer", customer), ("admin", admin_client)):
                    if who == "admin" and path.endswith(SKIP_FOR_ADMIN):
                        continue
                    r = client.request(method, url, content=content,
                                       headers={"Idempotency-Key": f"guard-{time.time_ns()}"})
                    _assert_refused(r, f"{who} {method} {path} {'.'.join(field)} {label}")
                    fed += 1
    assert fed >= 40
    assert customer.get("/auth/me").status_code == 200  # nothing odd happened to the session


def test_nul_in_a_web_form_post_is_a_400(gateway_url):
    with httpx.Client(base_url=gateway_url, timeout=15) as web:
        r = web.post("/login", content=b"email=a%00b%40example.com&password=x&csrf_token=t",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        _assert_refused(r, "web login form")


@pytest.mark.parametrize("url", [
    "/tickets/%00", "/tickets?q=%00", "/invoices/a%00b", "/subscriptions?status=%00",
])
def test_nul_in_path_or_query_is_a_400(gateway_url, url):
    customer = register(gateway_url)
    _assert_refused(customer.get(url), url)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


TAMPERED = [
    _b64(b"not-a-cursor"),
    _b64(b"0001-01-01T00:00:00+14:00|x"),  # would overflow when made UTC
    _b64(b"2026-05-01T12:30:00|x"),  # no time zone
    encode_cursor(datetime(2026, 5, 1, tzinfo=UTC), "x" * 300),
    _b64(b"\xff\xfe\xfd"),
]


def test_tampered_cursors_on_every_list_are_a_400(gateway_url, admin_client):
    customer = register(gateway_url)
    lists = {customer: ["/tickets", "/invoices"],  # a customer's /subscriptions has no pages
             admin_client: ["/admin/tickets", "/admin/invoices", "/admin/subscriptions"]}
    for client, paths in lists.items():
        for path in paths:
            for cursor in TAMPERED:
                _assert_refused(client.get(path, params={"cursor": cursor}), f"{path} {cursor}")
    for cursor in ["²", "-1", str(2**63), "9" * 40]:
        _assert_refused(admin_client.get("/admin/audit-log", params={"cursor": cursor}),
                        f"audit-log {cursor}")


@pytest.mark.parametrize("path", ["/tickets/99999999999999999999999999", "/invoices/" + "9" * 64,
                                  "/subscriptions/" + "z" * 64 + "/access"])
def test_out_of_range_ids_are_a_4xx(gateway_url, path):
    r = register(gateway_url).get(path)
    assert r.status_code in {400, 404}, (path, r.status_code, r.text)
    assert r.json()["code"] in {"VALIDATION_ERROR", "NOT_FOUND"}


def _header(key: str, claims: dict) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    sig = hmac.new(derive_key(key, IDENTITY_HEADER), body, hashlib.sha256).hexdigest()
    return f"{body.decode()}.{sig}"


SERVICE_READS = {"tickets": "/internal/tickets", "billing": "/internal/invoices",
                 "provisioner": "/internal/subscriptions", "telegram": "/internal/links/u-guard"}


@pytest.mark.parametrize("service", sorted(SERVICE_READS))
def test_services_refuse_identity_headers_without_sub_or_for_another_service(stack, service):
    key = stack.env.get("INTERNAL_SIGNING_KEY", "dev-internal-signing-key-change-me")
    url = stack.api_url(service) + SERVICE_READS[service]
    exp = int(time.time()) + 30
    good = identity.sign(key, "u-guard", "USER", audience=service)
    assert httpx.get(url, headers={identity.HEADER: good}, timeout=10).status_code == 200
    other = "billing" if service != "billing" else "tickets"
    for claims in ({"role": "USER", "aud": service, "exp": exp},
                   {"sub": "u-guard", "aud": service, "exp": exp},
                   {"sub": "u-guard", "role": "USER", "exp": exp},
                   {"sub": "u-guard", "role": "USER", "aud": other, "exp": exp},
                   {"sub": "u-guard", "role": "USER", "aud": service, "exp": exp + 3600}):
        r = httpx.get(url, headers={identity.HEADER: _header(key, claims)}, timeout=10)
        assert r.status_code == 401, (service, claims, r.text)
        assert r.json()["code"] == "UNAUTHENTICATED"


def _chunks(size: int):
    yield b'{"subject": "big", "body": "'
    for _ in range(size // 4096 + 1):
        yield b"x" * 4096
    yield b'"}'


def test_a_chunked_body_over_the_limit_is_a_413_at_the_gateway_and_a_service(stack, gateway_url):
    limit = int(stack.env.get("MAX_BODY_BYTES", 64 * 1024))
    key = stack.env.get("INTERNAL_SIGNING_KEY", "dev-internal-signing-key-change-me")
    customer = register(gateway_url)
    targets = [(customer, "/tickets", {}),
               (httpx.Client(base_url=stack.api_url("tickets"), timeout=15), "/internal/tickets",
                {identity.HEADER: identity.sign(key, "u-guard", "USER", audience="tickets")})]
    for client, path, headers in targets:
        r = client.post(path, content=_chunks(limit + 1),
                        headers={**headers, "Content-Type": "application/json"})
        assert "content-length" not in {k.lower() for k in r.request.headers}
        assert r.status_code == 413, (path, r.status_code, r.text)
        assert r.json()["code"] == "PAYLOAD_TOO_LARGE"


def test_a_non_ascii_idempotency_key_is_refused_saying_why(gateway_url):
    customer = register(gateway_url)
    plan = customer.get("/plans").json()["plans"][0]["id"]
    body = {"plan_id": plan, "asset": "USDT", "network": "TRON"}
    r = customer.post("/invoices", json=body, headers={"Idempotency-Key": "ключ-1".encode()})
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "VALIDATION_ERROR"
    assert "ASCII" in r.json()["message"] and "required" not in r.json()["message"]
    assert customer.get("/invoices").json()["invoices"] == []
