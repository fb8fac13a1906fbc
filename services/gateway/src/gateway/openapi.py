"""The public OpenAPI document: the error format `{code, message, details}` on every operation.

FastAPI documents validation failures as 422 with its own schema; this API answers 400
`VALIDATION_ERROR` in the common error format, so the document is rewritten to say so, and the
other error statuses an operation can answer are declared with the same schema.
"""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse

from runtime.errors import NotFound

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
        app.openapi_schema = doc
        return doc

    app.openapi = build


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
