"""The Outline management API fake behaves like shadowbox on every point adapters.md lists."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import pytest

from fakes.outline import create_app

SECRET = "TestSecretPrefix"
API = f"/{SECRET}"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(SECRET, hostname="vpn.example.test", port_for_new_keys=40000)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="https://outline") as c:
        c.state = app.state.outline  # type: ignore[attr-defined]
        yield c


async def test_routes_exist_only_under_the_secret_prefix(client):
    r = await client.get("/access-keys")
    assert r.status_code == 404
    assert r.json()["code"] == "ResourceNotFound"
    r = await client.get("/TestSecretPrefixX/access-keys")
    assert r.status_code == 404
    assert (await client.get(f"{API}/access-keys")).json() == {"accessKeys": []}


async def test_post_creates_keys_with_increasing_server_ids(client):
    a = await client.post(f"{API}/access-keys")
    b = await client.post(f"{API}/access-keys", json={"method": "aes-256-gcm"})
    assert a.status_code == b.status_code == 201
    assert (a.json()["id"], b.json()["id"]) == ("0", "1")
    key = b.json()
    assert key["method"] == "aes-256-gcm" and key["port"] == 40000
    assert "dataLimit" not in key
    url = key["accessUrl"]
    assert url.startswith("ss://") and url.endswith("@vpn.example.test:40000/?outline=1")
    userinfo = url[len("ss://"):url.index("@")]
    decoded = base64.urlsafe_b64decode(userinfo + "=" * (-len(userinfo) % 4)).decode()
    assert decoded == f"aes-256-gcm:{key['password']}"
    r = await client.post(f"{API}/access-keys", json={"id": "mine"})
    assert r.status_code == 400
    r = await client.post(f"{API}/access-keys", json={"method": "rc4-md5"})
    assert r.status_code == 400


async def test_put_with_caller_id_is_created_once_then_conflicts(client):
    body = {"name": "vpn_abc", "password": "fixed-password-1", "limit": {"bytes": 1000}}
    first = await client.put(f"{API}/access-keys/vpn_abc", json=body)
    assert first.status_code == 201
    assert first.json()["id"] == "vpn_abc"
    assert first.json()["dataLimit"] == {"bytes": 1000}
    again = await client.put(f"{API}/access-keys/vpn_abc", json=body)
    assert again.status_code == 409
    assert again.json()["code"] == "Conflict"
    keys = (await client.get(f"{API}/access-keys")).json()["accessKeys"]
    assert [k["id"] for k in keys] == ["vpn_abc"]
    other = await client.put(f"{API}/access-keys/vpn_other",
                             json={"password": "fixed-password-1"})
    assert other.status_code == 409  # the password is taken by another key
    got = await client.get(f"{API}/access-keys/vpn_abc")
    assert got.status_code == 200 and got.json()["accessUrl"] == first.json()["accessUrl"]


async def test_delete_then_not_found(client):
    await client.put(f"{API}/access-keys/k1", json={})
    r = await client.delete(f"{API}/access-keys/k1")
    assert r.status_code == 204 and r.content == b""
    r = await client.delete(f"{API}/access-keys/k1")
    assert r.status_code == 404
    assert r.json()["code"] == "NotFoundError"
    assert (await client.get(f"{API}/access-keys/k1")).status_code == 404


async def test_data_limits_and_rename(client):
    await client.put(f"{API}/access-keys/k2", json={})
    r = await client.put(f"{API}/access-keys/k2/data-limit", json={"limit": {"bytes": 5}})
    assert r.status_code == 204
    assert (await client.get(f"{API}/access-keys/k2")).json()["dataLimit"] == {"bytes": 5}
    for bad in ({"limit": {"bytes": -1}}, {"limit": {"bytes": "5"}}, {}):
        assert (await client.put(f"{API}/access-keys/k2/data-limit", json=bad)).status_code == 400
    r = await client.delete(f"{API}/access-keys/k2/data-limit")
    assert r.status_code == 204
    assert "dataLimit" not in (await client.get(f"{API}/access-keys/k2")).json()
    assert (await client.put(f"{API}/access-keys/nope/data-limit",
                             json={"limit": {"bytes": 1}})).status_code == 404
    assert (await client.put(f"{API}/access-keys/k2/name", json={"name": "n"})).status_code == 204
    assert (await client.get(f"{API}/access-keys/k2")).json()["name"] == "n"
    assert (await client.put(f"{API}/access-keys/k2/name", json={})).status_code == 400


async def test_server_info_and_transfer_metrics(client):
    server = (await client.get(f"{API}/server")).json()
    assert server["portForNewAccessKeys"] == 40000
    assert server["hostnameForAccessKeys"] == "vpn.example.test"
    assert (await client.put(f"{API}/name", json={"name": "Mine"})).status_code == 204
    assert (await client.get(f"{API}/server")).json()["name"] == "Mine"
    client.state.transfer["0"] = 123
    assert (await client.get(f"{API}/metrics/transfer")).json() == {
        "bytesTransferredByUserId": {"0": 123}}


async def test_injected_failures_then_recovery(client):
    client.state.inject_failures(2, status=503)
    assert (await client.get(f"{API}/access-keys")).status_code == 503
    assert (await client.get(f"{API}/access-keys")).status_code == 503
    assert (await client.get(f"{API}/access-keys")).status_code == 200
