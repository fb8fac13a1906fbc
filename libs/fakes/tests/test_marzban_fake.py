"""The Marzban API fake behaves like Marzban v0.8 on every point adapters.md lists."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest

from fakes.marzban import create_app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(admin_username="admin", admin_password="s3cret")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://marzban") as c:
        c.state = app.state.marzban  # type: ignore[attr-defined]
        yield c


async def login(client: httpx.AsyncClient) -> dict[str, str]:
    r = await client.post("/api/admin/token", data={"username": "admin", "password": "s3cret"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer"
    return {"Authorization": f"Bearer {body['access_token']}"}


def user_body(username: str = "vpn_user1", **extra) -> dict:
    return {"username": username, "proxies": {"vless": {}}, "inbounds": {}, "expire": 0,
            "data_limit": 0, "status": "active", **extra}


async def test_token_needs_a_form_body_and_the_right_password(client):
    r = await client.post("/api/admin/token", json={"username": "admin", "password": "s3cret"})
    assert r.status_code == 422
    r = await client.post("/api/admin/token", data={"username": "admin", "password": "nope"})
    assert r.status_code == 401
    assert r.json() == {"detail": "Incorrect username or password"}
    await login(client)


async def test_calls_without_or_with_a_bad_token_are_refused(client):
    r = await client.get("/api/users")
    assert r.status_code == 401 and r.json() == {"detail": "Not authenticated"}
    r = await client.get("/api/users", headers={"Authorization": "Bearer forged"})
    assert r.status_code == 401 and r.json() == {"detail": "Could not validate credentials"}
    headers = await login(client)
    client.state.revoke_tokens()
    assert (await client.get("/api/users", headers=headers)).status_code == 401


async def test_create_answers_200_and_nulls_zero_limits(client):
    h = await login(client)
    r = await client.post("/api/user", json=user_body(), headers=h)
    assert r.status_code == 200, r.text
    user = r.json()
    assert user["username"] == "vpn_user1" and user["status"] == "active"
    assert user["expire"] is None and user["data_limit"] is None
    assert user["links"] and user["links"][0].startswith("vless://")
    assert user["subscription_url"].startswith("/sub/")  # no prefix configured: relative
    r = await client.post("/api/user", json=user_body(), headers=h)
    assert r.status_code == 409 and r.json() == {"detail": "User already exists"}


async def test_leaving_inbounds_out_gives_a_user_without_links(client):
    h = await login(client)
    body = user_body("vpn_nolinks")
    del body["inbounds"]
    user = (await client.post("/api/user", json=body, headers=h)).json()
    assert user["links"] == []
    assert user["excluded_inbounds"] == {"vless": ["VLESS TCP REALITY"]}


async def test_bad_usernames_and_unknown_protocols(client):
    h = await login(client)
    assert (await client.post("/api/user", json=user_body("ab"), headers=h)).status_code == 422
    assert (await client.post("/api/user", json=user_body("a" * 33),
                              headers=h)).status_code == 422
    r = await client.post("/api/user", json={**user_body("vpn_trojan"),
                                             "proxies": {"trojan": {}}}, headers=h)
    assert r.status_code == 400


async def test_modify_only_given_fields_and_refuse_expired_status(client):
    h = await login(client)
    expire = int(time.time()) + 3600
    await client.post("/api/user", json=user_body(expire=expire, data_limit=10), headers=h)
    r = await client.put("/api/user/vpn_user1", json={"status": "expired"}, headers=h)
    assert r.status_code == 422
    r = await client.put("/api/user/vpn_user1", json={"status": "disabled"}, headers=h)
    assert r.status_code == 200
    user = r.json()
    assert user["status"] == "disabled" and user["expire"] == expire and user["data_limit"] == 10
    later = expire + 86400
    user = (await client.put("/api/user/vpn_user1", json={"expire": later, "status": "active"},
                             headers=h)).json()
    assert user["status"] == "active" and user["expire"] == later


async def test_an_expired_user_given_time_is_active_again(client):
    h = await login(client)
    await client.post("/api/user", json=user_body(expire=int(time.time()) - 10), headers=h)
    assert (await client.get("/api/user/vpn_user1", headers=h)).json()["status"] == "expired"
    user = (await client.put("/api/user/vpn_user1", json={"expire": int(time.time()) + 600},
                             headers=h)).json()
    assert user["status"] == "active"


async def test_delete_then_every_call_is_not_found(client):
    h = await login(client)
    await client.post("/api/user", json=user_body(), headers=h)
    r = await client.delete("/api/user/vpn_user1", headers=h)
    assert r.status_code == 200 and r.json() == {"detail": "User successfully deleted"}
    for method, body in (("GET", None), ("PUT", {"status": "active"}), ("DELETE", None)):
        r = await client.request(method, "/api/user/vpn_user1", json=body, headers=h)
        assert r.status_code == 404 and r.json() == {"detail": "User not found"}


async def test_subscription_url_token_changes_between_reads(client):
    h = await login(client)
    await client.post("/api/user", json=user_body(), headers=h)
    a = (await client.get("/api/user/vpn_user1", headers=h)).json()["subscription_url"]
    b = (await client.get("/api/user/vpn_user1", headers=h)).json()["subscription_url"]
    assert a != b and a.startswith("/sub/") and b.startswith("/sub/")


async def test_list_users_pages_with_a_total(client):
    h = await login(client)
    for i in range(5):
        await client.post("/api/user", json=user_body(f"vpn_u{i}"), headers=h)
    page = (await client.get("/api/users", params={"offset": 2, "limit": 2}, headers=h)).json()
    assert page["total"] == 5
    assert [u["username"] for u in page["users"]] == ["vpn_u2", "vpn_u3"]
