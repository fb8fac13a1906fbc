"""Schemathesis against the gateway's OpenAPI document: no 5xx, responses match the document.

Runs signed in as a customer and as an admin, with a fixed seed and a bounded number of examples
per operation, so the run is repeatable and its length bounded.
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import register

EXAMPLES = 12
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance,
          content_type_conformance]


@pytest.fixture(scope="module")
def user_cookie(gateway_url) -> str:
    return register(gateway_url).cookies["sid"]


@pytest.fixture(scope="module")
def admin_cookie(admin_client) -> str:
    return admin_client.cookies["sid"]


FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])


def fuzz(gateway_url: str, cookie: str) -> list[str]:
    """Every operation of the document (but signing out), each with EXAMPLES generated cases."""
    schema = schemathesis.openapi.from_url(f"{gateway_url}/api/v1/openapi.json")
    failures = []
    for result in schema.get_all_operations():
        op = result.ok()
        if op.path.endswith("/auth/logout"):  # would end the session the run uses
            continue

        @given(case=op.as_strategy())
        @FUZZ
        def run(case):
            case.call_and_validate(headers={"Cookie": f"sid={cookie}"}, checks=CHECKS)

        try:
            run()
        except Exception as exc:  # collect all, report together
            failures.append(f"{op.method.upper()} {op.path}: {str(exc)[:600]}")
    return failures


def test_api_as_customer(gateway_url, user_cookie):
    failures = fuzz(gateway_url, user_cookie)
    assert not failures, "\n\n".join(failures)


def test_api_as_admin(gateway_url, admin_cookie):
    failures = fuzz(gateway_url, admin_cookie)
    assert not failures, "\n\n".join(failures)


def test_openapi_documents_the_error_format(gateway_url):
    doc = httpx.get(f"{gateway_url}/api/v1/openapi.json", timeout=10).json()
    assert "HTTPValidationError" not in str(doc)
    op = doc["paths"]["/api/v1/tickets"]["post"]
    assert op["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}
    assert {"/api/v1/auth/register", "/api/v1/tickets/{ticket_id}", "/api/v1/admin/audit-log",
            "/api/v1/telegram/webhook", "/api/v1/admin/queues"} <= set(doc["paths"])
