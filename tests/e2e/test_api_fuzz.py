"""Schemathesis against the gateway's OpenAPI document with every check it has (`--checks all`).

Runs the schemathesis CLI signed in as a customer and as an admin, with a fixed seed and
EXAMPLES generated cases per operation (positive and negative), so the run is repeatable and its
length bounded (about a minute and a half for both on a 2-core machine). The few documented
exceptions are in schemathesis.toml beside this file, each with its reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, SLOT, register

EXAMPLES = 40
SEED = 20261201
CONFIG = Path(__file__).with_name("schemathesis.toml")
REPORTS = ROOT / ".run" / f"test-logs{SLOT or ''}"


@pytest.fixture(scope="module")
def user_cookie(gateway_url) -> str:
    return register(gateway_url).cookies["sid"]


@pytest.fixture(scope="module")
def admin_cookie(admin_client) -> str:
    return admin_client.cookies["sid"]


def fuzz(gateway_url: str, cookie: str, label: str) -> subprocess.CompletedProcess:
    """Every operation but signing out (it would end the session the run uses).

    The session goes through the document's `cookieAuth` scheme (schemathesis.toml).
    """
    cli = Path(sys.executable).with_name("schemathesis")
    REPORTS.mkdir(parents=True, exist_ok=True)
    cmd = [str(cli), "--no-color", "--config-file", str(CONFIG), "run",
           f"{gateway_url}/api/v1/openapi.json", "--checks", "all", "--seed", str(SEED),
           "--max-examples", str(EXAMPLES), "--phases", "examples,fuzzing", "--workers", "1",
           "--exclude-path-regex", "/auth/logout$",
           "--request-timeout", "15", "--suppress-health-check", "all"]
    # cwd: schemathesis keeps a `.schemathesis/` cache in the working directory
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPORTS,
                            env={**os.environ, "NO_COLOR": "1", "FUZZ_SESSION": cookie})
    (REPORTS / f"schemathesis-{label}.txt").write_text(result.stdout + result.stderr)
    return result


def _report(result: subprocess.CompletedProcess) -> str:
    return (result.stdout + result.stderr)[-12000:]


@pytest.mark.timeout(900)  # the CLI has 600 s; on a busy 2-core machine a run takes 3-5 min
def test_api_as_customer(gateway_url, user_cookie):
    result = fuzz(gateway_url, user_cookie, "customer")
    assert result.returncode == 0, _report(result)


@pytest.mark.timeout(900)
def test_api_as_admin(gateway_url, admin_cookie):
    result = fuzz(gateway_url, admin_cookie, "admin")
    assert result.returncode == 0, _report(result)


def _doc(gateway_url: str) -> dict:
    return httpx.get(f"{gateway_url}/api/v1/openapi.json", timeout=10).json()


def test_openapi_documents_the_error_format(gateway_url):
    doc = _doc(gateway_url)
    assert "HTTPValidationError" not in str(doc)
    op = doc["paths"]["/api/v1/tickets"]["post"]
    assert op["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}
    assert {"/api/v1/auth/register", "/api/v1/tickets/{ticket_id}", "/api/v1/admin/audit-log",
            "/api/v1/telegram/webhook", "/api/v1/admin/queues"} <= set(doc["paths"])


def test_openapi_says_what_the_server_accepts(gateway_url):
    doc = _doc(gateway_url)
    schemas, paths = doc["components"]["schemas"], doc["paths"]
    # asset/network: the configured pairs, as enums and as the pairs themselves
    options = httpx.get(f"{gateway_url}/api/v1/payment-options", timeout=10,
                        cookies={"sid": register(gateway_url).cookies["sid"]}).json()["options"]
    invoice = schemas["InvoiceCreate"]
    assert set(invoice["properties"]["asset"]["enum"]) == {o["asset"] for o in options}
    assert {(p["properties"]["asset"]["const"], p["properties"]["network"]["const"])
            for p in invoice["anyOf"]} == {(o["asset"], o["network"]) for o in options}
    # the cursor: an opaque string with a pattern, on every list
    cursors = [p["schema"] for item in paths.values() for op in item.values()
               for p in op.get("parameters", []) if p["name"] == "cursor"]
    assert len(cursors) >= 6 and all(c["pattern"] and c["type"] == "string" for c in cursors)
    # PATCH: null only where the server takes it; an empty body is not a change
    update = schemas["PlanUpdate"]
    assert update["minProperties"] == 1
    assert update["properties"]["name"]["type"] == "string"
    assert {"type": "null"} in update["properties"]["description"]["anyOf"]
    # no NUL in any free text; sessions declared
    assert schemas["RefundBody"]["properties"]["reason"]["pattern"] == "^[^\\x00]*$"
    assert doc["components"]["securitySchemes"]["cookieAuth"]["in"] == "cookie"
    assert paths["/api/v1/tickets"]["get"]["security"] == [{"cookieAuth": []}]
    assert "security" not in paths["/api/v1/plans"]["get"]


def test_integers_the_document_allows_are_accepted_and_405_says_allow(gateway_url, admin_client):
    created = admin_client.post("/admin/plans", json={
        "name": "Whole numbers", "price_usd": "3.00", "duration_days": 30.0, "max_devices": 2.0})
    assert created.status_code == 201, created.text
    assert created.json()["plan"]["duration_days"] == 30
    for bad in ({"name": None}, {}, {"duration_days": 1.5}, {"duration_days": "3"}):
        r = admin_client.patch(f"/admin/plans/{created.json()['plan']['id']}", json=bad)
        assert r.status_code == 400, (bad, r.text)
    r = admin_client.put("/tickets")
    assert r.status_code == 405 and set(r.headers["Allow"].split(", ")) == {"GET", "HEAD", "POST"}
    assert r.json()["code"]
