"""The Marzban API fake behaves like the real Marzban v0.8.4 on every point adapters.md lists."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from fakes.marzban import create_app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(admin_username="admin", admin_password="s3cret", review_interval=None)
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
    # expired / limited are set by the review every 10 s, not when read
    assert (await client.get("/api/user/vpn_user1", headers=h)).json()["status"] == "active"
    client.state.review()
    assert (await client.get("/api/user/vpn_user1", headers=h)).json()["status"] == "expired"
    user = (await client.put("/api/user/vpn_user1", json={"expire": int(time.time()) + 600},
                             headers=h)).json()
    assert user["status"] == "active"


async def test_the_review_runs_every_ten_seconds_by_default():
    app = create_app(admin_username="admin", admin_password="s3cret")
    state = app.state.marzban
    assert state.review_interval == 10
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://marzban") as c:
        h = {"Authorization": f"Bearer {state.admin_token()}"}
        await c.post("/api/user", json=user_body(expire=int(time.time()) - 1), headers=h)
        assert (await c.get("/api/user/vpn_user1", headers=h)).json()["status"] == "active"
        state.last_review -= 10
        assert (await c.get("/api/user/vpn_user1", headers=h)).json()["status"] == "expired"


async def test_a_limited_user_stays_limited_through_a_put_until_reset(client):
    h = await login(client)
    await client.post("/api/user", json=user_body(data_limit=100, expire=int(time.time()) + 60),
                      headers=h)
    client.state.use_traffic("vpn_user1", 100)
    client.state.review()
    user = (await client.put("/api/user/vpn_user1", json={
        "status": "active", "data_limit": 100, "expire": int(time.time()) + 3600},
        headers=h)).json()
    assert user["status"] == "limited"
    user = (await client.post("/api/user/vpn_user1/reset", headers=h)).json()
    assert user["status"] == "active" and user["used_traffic"] == 0
    client.state.use_traffic("vpn_user1", 50)
    user = (await client.put("/api/user/vpn_user1", json={"data_limit": 40}, headers=h)).json()
    assert user["status"] == "limited"  # a lower limit than used: limited at once
    user = (await client.put("/api/user/vpn_user1", json={"data_limit": 0}, headers=h)).json()
    assert user["status"] == "active" and user["data_limit"] is None


async def test_reset_re_activates_a_disabled_user_but_not_an_expired_one(client):
    h = await login(client)
    await client.post("/api/user", json=user_body(), headers=h)
    await client.put("/api/user/vpn_user1", json={"status": "disabled"}, headers=h)
    user = (await client.post("/api/user/vpn_user1/reset", headers=h)).json()
    assert user["status"] == "active"  # the real `not in (expired or disabled)` bug
    await client.post("/api/user", json=user_body("vpn_user2", expire=int(time.time()) - 5),
                      headers=h)
    client.state.review()
    user = (await client.post("/api/user/vpn_user2/reset", headers=h)).json()
    assert user["status"] == "expired"


async def test_put_proxies_replaces_them_and_inbounds_replace_the_chosen(client):
    h = await login(client)
    user = (await client.post("/api/user", json=user_body(), headers=h)).json()
    vless = user["proxies"]["vless"]
    user = (await client.put("/api/user/vpn_user1", json={
        "proxies": {"vless": vless, "vmess": {}}}, headers=h)).json()
    assert user["proxies"]["vless"] == vless and set(user["proxies"]) == {"vless", "vmess"}
    assert user["inbounds"]["vmess"] == ["VMess TCP"]  # a new protocol gets every inbound
    user = (await client.put("/api/user/vpn_user1", json={"proxies": {"vmess": {}}},
                             headers=h)).json()
    assert set(user["proxies"]) == {"vmess"}  # left out: removed; sent as {}: new credentials
    user = (await client.put("/api/user/vpn_user1", json={"inbounds": {"vmess": []}},
                             headers=h)).json()
    assert user["inbounds"]["vmess"] == [] and user["links"] == []


async def test_a_create_without_proxies_breaks_the_listing(client):
    h = await login(client)
    r = await client.post("/api/user", json={**user_body(), "proxies": {}}, headers=h)
    assert r.status_code == 422 and r.json() == {
        "detail": {"proxies": "Value error, Each user needs at least one proxy"}}
    assert (await client.get("/api/users", headers=h)).status_code == 200
    body = user_body("vpn_broken")
    del body["proxies"]
    assert (await client.post("/api/user", json=body, headers=h)).status_code == 200
    assert (await client.get("/api/users", headers=h)).status_code == 500


async def test_a_validation_error_names_its_field(client):
    h = await login(client)
    r = await client.post("/api/user", json=user_body("ab"), headers=h)
    assert r.status_code == 422 and set(r.json()["detail"]) == {"username"}
    r = await client.post("/api/admin/token", json={"username": "admin"})
    assert r.json() == {"detail": {"username": "Field required", "password": "Field required"}}


async def test_tokens_are_jwts_that_survive_a_restart():
    first = create_app(admin_username="admin", admin_password="s3cret", secret="k1")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=first),
                                 base_url="http://marzban") as c:
        r = await c.post("/api/admin/token", data={"username": "admin", "password": "s3cret"})
        token = r.json()["access_token"]
    assert token.startswith("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.")
    again = create_app(admin_username="admin", admin_password="s3cret", secret="k1")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=again),
                                 base_url="http://marzban") as c:
        r = await c.get("/api/users", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200


async def test_delete_then_every_call_is_not_found(client):
    h = await login(client)
    await client.post("/api/user", json=user_body(), headers=h)
    r = await client.delete("/api/user/vpn_user1", headers=h)
    # created by the environment's sudo admin (admin null): 500, but the user is gone
    assert r.status_code == 500
    for method, body in (("GET", None), ("PUT", {"status": "active"}), ("DELETE", None)):
        r = await client.request(method, "/api/user/vpn_user1", json=body, headers=h)
        assert r.status_code == 404 and r.json() == {"detail": "User not found"}


async def test_delete_answers_200_for_an_admin_in_the_database():
    app = create_app(admin_username="admin", admin_password="s3cret", admin_in_db=True)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://marzban") as c:
        h = {"Authorization": f"Bearer {app.state.marzban.admin_token()}"}
        user = (await c.post("/api/user", json=user_body(), headers=h)).json()
        assert user["admin"]["username"] == "admin"
        r = await c.delete("/api/user/vpn_user1", headers=h)
        assert r.status_code == 200 and r.json() == {"detail": "User successfully deleted"}


async def test_subscription_token_changes_once_a_second_and_serves(client):
    h = await login(client)
    await client.post("/api/user", json=user_body(data_limit=500), headers=h)
    for _ in range(5):
        start = time.time()
        a = (await client.get("/api/user/vpn_user1", headers=h)).json()["subscription_url"]
        b = (await client.get("/api/user/vpn_user1", headers=h)).json()["subscription_url"]
        if int(time.time()) == int(start):
            assert a == b and a.startswith("/sub/")
            break
    else:
        pytest.fail("no two reads within one second")
    r = await client.get(a)
    assert r.status_code == 200
    assert r.headers["subscription-userinfo"] == "upload=0; download=0; total=500; expire=0"
    assert base64.b64decode(r.text).decode().startswith("vless://")
    assert (await client.get(a[:-3] + "xyz")).status_code == 404  # a forged signature
    await asyncio.sleep(1.05)
    c = (await client.get("/api/user/vpn_user1", headers=h)).json()["subscription_url"]
    assert c != a and (await client.get(a)).status_code == 200  # the old one still serves


async def test_list_users_pages_with_a_total_and_limit_zero_means_all(client):
    h = await login(client)
    for i in range(5):
        await client.post("/api/user", json=user_body(f"vpn_u{i}"), headers=h)
    page = (await client.get("/api/users", params={"offset": 2, "limit": 2}, headers=h)).json()
    assert page["total"] == 5
    assert [u["username"] for u in page["users"]] == ["vpn_u2", "vpn_u3"]
    every = (await client.get("/api/users", params={"limit": 0}, headers=h)).json()
    assert len(every["users"]) == 5


async def test_a_lost_answer_still_carries_out_the_request(client):
    h = await login(client)
    client.state.lose_answers(1)
    assert (await client.post("/api/user", json=user_body(), headers=h)).status_code == 502
    assert (await client.post("/api/user", json=user_body(), headers=h)).status_code == 409


async def test_the_control_api_spends_traffic_reviews_and_fails_calls(client):
    h = await login(client)
    await client.post("/api/user", json=user_body(data_limit=10), headers=h)
    assert (await client.post("/_fake/users/vpn_user1/traffic", json={"bytes": 10})).json()[
        "used_traffic"] == 10
    await client.post("/_fake/review")
    assert (await client.get("/api/user/vpn_user1", headers=h)).json()["status"] == "limited"
    await client.post("/_fake/failures", json={"count": 1, "status": 503})
    assert (await client.get("/api/users", headers=h)).status_code == 503
