"""The public OpenAPI document: the error format `{code, message, details}` on every operation.

FastAPI documents validation failures as 422 with its own schema; this API answers 400
`VALIDATION_ERROR` in the common error format, so the document is rewritten to say so, and the
other error statuses an operation can answer are declared with the same schema.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

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
