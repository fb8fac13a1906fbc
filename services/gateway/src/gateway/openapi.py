"""The public OpenAPI document, made to say exactly what the server accepts.

FastAPI documents validation failures as 422 with its own schema; this API answers 400
`VALIDATION_ERROR` in the common error format, so the document is rewritten to say so, and the
other error statuses an operation can answer are declared with the same schema. On top of what the
models say: no string may hold NUL (the input guard answers 400), ticket text must show a visible
character, a cursor is an opaque token, `asset`/`network` are the pairs billing is configured with
(read from billing when the document is first served), and the operations that need a session
say so (`cookieAuth`).
"""

from __future__ import annotations

import copy
import html
import unicodedata
from functools import cache
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.routing import APIRoute

from contracts.text import INVISIBLE
from gateway.api.deps import current_caller, current_caller_even_blocked
from gateway.clients import ANONYMOUS
from runtime.errors import AppError, NotFound

ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "required": ["code", "message"],
    "properties": {
        "code": {"type": "string"},
        "message": {"type": "string"},
        "details": {},
    },
}

DESCRIPTIONS = {
    "400": "Invalid input (VALIDATION_ERROR, IDEMPOTENCY_KEY_REQUIRED)",
    "401": "Not signed in (UNAUTHENTICATED)",
    "403": "Not allowed (FORBIDDEN)",
    "404": "Not found, or not yours (NOT_FOUND)",
    "405": "Method not allowed",
    "409": "Conflict (CONFLICT, IDEMPOTENCY_IN_PROGRESS)",
    "413": "Body too large (PAYLOAD_TOO_LARGE)",
    "415": "Unsupported media type",
    "422": "Idempotency key reused with another request (IDEMPOTENCY_KEY_REUSED)",
    "429": "Too many requests (RATE_LIMITED, with Retry-After)",
    "500": "Unexpected error (INTERNAL_ERROR)",
    "503": "A service is unavailable (SERVICE_UNAVAILABLE)",
}


def install(app: FastAPI) -> None:
    def build():
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, routes=app.routes,
                          description="Public API of the VPN service (see docs/02-api).")
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        schemas["Error"] = ERROR_SCHEMA
        ref = {"$ref": "#/components/schemas/Error"}
        for path in doc.get("paths", {}).values():
            for op in path.values():
                responses = op.setdefault("responses", {})
                keep_422 = "422" in responses and "HTTPValidationError" not in str(responses["422"])
                for status, text in DESCRIPTIONS.items():
                    if status == "422" and not keep_422:
                        responses.pop("422", None)
                        continue
                    if status not in responses or "HTTPValidationError" in str(responses[status]):
                        responses[status] = {"description": text,
                                             "content": {"application/json": {"schema": ref}}}
        _refine(app, doc)
        app.openapi_schema = doc
        return doc

    app.openapi = build
    options: dict[str, list] = {}

    async def openapi_json(request: Request) -> JSONResponse:
        if "pairs" not in options:
            pairs = await _payment_options(app)
            if pairs is not None:
                options["pairs"] = pairs
                options["doc"] = with_payment_options(build(), pairs)
        return JSONResponse(options.get("doc") or build())

    app.router.routes = [r for r in app.router.routes
                         if getattr(r, "path", None) != app.openapi_url]
    app.add_route(app.openapi_url, openapi_json, include_in_schema=False)


NO_NUL = "^[^\\x00]*$"
CURSOR = {"type": "string", "pattern": "^[A-Za-z0-9_=-]{0,512}$",
          "description": "Opaque: the `next_cursor` of the previous page (empty or absent: the "
                         "first page). Any other value, even one matching the pattern, is "
                         "refused with 400 VALIDATION_ERROR."}
# Fields of contracts.text.VisibleText: invisible characters are removed and something must show.
VISIBLE_FIELDS = {"TicketCreate": ("subject", "body"), "MessageCreate": ("body",),
                  "NoteCreate": ("body",), "RatingCreate": ("comment",),
                  "CannedReplyCreate": ("name", "body_en", "body_ru"),
                  "CannedReplyUpdate": ("name", "body_en", "body_ru"),
                  "BroadcastCreate": ("text_en", "text_ru"), "UrlButton": ("text",)}


@cache
def visible_text_pattern() -> str:
    """No NUL and no invisible character, and at least one visible one (contracts.text rules).

    The visible characters are listed as ranges (a negated class of the hidden ones says the
    same but makes generators such as schemathesis several times slower).
    """
    hidden = {"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"}
    shown = [cp for cp in range(0x110000)
             if not chr(cp).isspace() and unicodedata.category(chr(cp)) not in hidden]
    ranges, start, prev = [], shown[0], shown[0]
    for cp in shown[1:] + [-1]:
        if cp != prev + 1:
            ranges.append((start, prev))
            start = cp
        prev = cp

    def esc(cp: int) -> str:  # JSON Schema patterns have no \U: astral characters as such
        return f"\\u{cp:04x}" if cp <= 0xFFFF else chr(cp)

    visible = "".join(esc(a) if a == b else f"{esc(a)}-{esc(b)}" for a, b in ranges)
    other = "\\x00" + "".join(esc(ord(c)) for c in INVISIBLE)
    return f"^[^{other}]*[{visible}][^{other}]*$"


def _plain_strings(node) -> None:
    """Every string without a pattern, format or fixed values: no NUL (the input guard's 400)."""
    if isinstance(node, dict):
        types = node.get("type")
        if (types == "string" or (isinstance(types, list) and "string" in types)) and not (
                {"pattern", "format", "enum", "const"} & node.keys()):
            node["pattern"] = NO_NUL
        for value in node.values():
            _plain_strings(value)
    elif isinstance(node, list):
        for value in node:
            _plain_strings(value)


def _needs_session(route) -> bool:
    callers = {current_caller, current_caller_even_blocked}
    stack = [route.dependant]
    while stack:
        dep = stack.pop()
        if dep.call in callers:
            return True
        stack.extend(dep.dependencies)
    return False


def _secured(app: FastAPI) -> set[tuple[str, str]]:
    """(path, method) of every operation that needs a session."""
    try:  # FastAPI >= 0.130 includes routers lazily; this walks them as get_openapi does
        from fastapi.routing import iter_route_contexts
        routes = [(c.path_format, c.methods, c) for c in iter_route_contexts(app.routes)
                  if c.methods and getattr(c, "dependant", None) is not None]
    except ImportError:
        routes = [(r.path_format, r.methods, r) for r in app.routes if isinstance(r, APIRoute)]
    return {(path, method.lower()) for path, methods, route in routes if _needs_session(route)
            for method in methods}


def _refine(app: FastAPI, doc: dict) -> None:
    schemas = doc["components"]["schemas"]
    doc["components"]["securitySchemes"] = {"cookieAuth": {
        "type": "apiKey", "in": "cookie", "name": app.state.settings.session_cookie_name,
        "description": "The session cookie set by POST /auth/register and /auth/login"}}
    for name, fields in VISIBLE_FIELDS.items():
        for field in fields:
            schemas[name]["properties"][field]["pattern"] = visible_text_pattern()
    for schema in schemas.values():
        if schema is not ERROR_SCHEMA:
            _plain_strings(schema)
    secured = _secured(app)
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            for param in op.get("parameters", []):
                if param.get("name") == "cursor" and param.get("in") == "query":
                    param["schema"] = dict(CURSOR)
                else:
                    _plain_strings(param.get("schema"))
            if (path, method) in secured:
                op["security"] = [{"cookieAuth": []}]
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            _plain_strings(body.get("schema"))


async def _payment_options(app: FastAPI) -> list[tuple[str, str, str]] | None:
    """The (provider, asset, network) options billing offers, or None while it cannot say."""
    try:
        options = (await app.state.clients.billing.payment_options(ANONYMOUS)).data.options
    except (AppError, ValueError):
        return None
    return [(o.provider, o.asset, o.network) for o in options]


def with_payment_options(doc: dict, options: list[tuple[str, str, str]]) -> dict:
    """The document with `asset`/`network` of InvoiceCreate, TransferBody and TopUpCreate as
    the pairs offered, and `provider` as the providers enabled."""
    doc = copy.deepcopy(doc)
    every = sorted({(a, n) for _, a, n in options})
    on_chain = sorted({(a, n) for p, a, n in options if p == "sandbox"})
    for name in ("InvoiceCreate", "TransferBody", "TopUpCreate"):
        schema = doc["components"]["schemas"].get(name)
        # a sandbox transfer moves coins on the sandbox chain only
        pairs = on_chain if name == "TransferBody" else every
        if schema is None or not pairs:
            continue
        props = schema["properties"]
        if "provider" in props:
            providers = list(dict.fromkeys(p for p, _, _ in options))
            props["provider"] = {"anyOf": [{"type": "string", "enum": providers},
                                           {"type": "null"}],
                                 "description": props["provider"].get("description", "")}
        props["asset"] = {"type": "string", "enum": sorted({a for a, _ in pairs})}
        props["network"] = {"type": "string", "enum": sorted({n for _, n in pairs})}
        schema["anyOf"] = [{"properties": {"asset": {"const": a}, "network": {"const": n}}}
                           for a, n in pairs]
        schema["description"] = ("`asset` and `network` together are one of the pairs of "
                                 "GET /payment-options.")
    return doc


# Swagger UI from the `swagger-ui-bundle-v2` package, served by the gateway: the product's CSP
# (`script-src 'self'`, no inline script) holds on the docs page too, and no CDN is involved.
DOCS_ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
               "favicon-32x32.png": "image/png"}
DOCS_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - API documentation</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi_url}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="/static/swagger-init.js"></script>
</body>
</html>
"""


def install_docs(app: FastAPI, docs_url: str) -> None:
    """`docs_url`: the Swagger UI page; its assets under `docs_url + "/assets/"`."""
    from swagger_ui_bundle import swagger_ui_path

    assets = f"{docs_url}/assets"
    page = DOCS_PAGE.format(title=html.escape(app.title), assets=assets,
                            openapi_url=html.escape(app.openapi_url or ""))

    @app.get(docs_url, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get(assets + "/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> FileResponse:
        if name not in DOCS_ASSETS:
            raise NotFound("No such documentation asset")
        return FileResponse(Path(str(swagger_ui_path)) / name, media_type=DOCS_ASSETS[name],
                            headers={"Cache-Control": "public, max-age=86400"})
