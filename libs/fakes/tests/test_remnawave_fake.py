"""The Remnawave fake answers as Remnawave 3.3.2 does on the points adapters.md lists."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from fakes.remnawave import RemnawaveFake, create_app

TOKEN = "tok"
FORWARDED = {"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https"}
SQUAD = "0b6c7e9a-4a57-4a8e-9a53-6f7b7e2d9c01"
LATER = (datetime.now(UTC) + timedelta(days=30)).isoformat()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    fake = RemnawaveFake(token=TOKEN, admin_token="admin-jwt")
    app = create_app(fake)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rw",
                                 headers={"Authorization": f"Bearer {TOKEN}", **FORWARDED}) as c:
        c.fake = fake  # type: ignore[attr-defined]
        yield c


async def create(client, username: str = "vpn_a", **extra) -> httpx.Response:
    return await client.post("/api/users", json={"username": username, "expireAt": LATER,
                                                 **extra})


async def test_create_answers_201_in_the_envelope_and_a_taken_username_is_a019(client):
    r = await create(client, activeInternalSquads=[SQUAD], hwidDeviceLimit=2)
    assert r.status_code == 201
    user = r.json()["response"]
    assert isinstance(user["id"], int) and "uuid" not in user
    assert user["activeInternalSquads"] == [{"uuid": SQUAD, "name": "Default-Squad"}]
    assert user["subscriptionUrl"] == f"https://panel.example.test/api/sub/{user['shortUuid']}"
    again = await create(client)
    assert again.status_code == 400
    body = again.json()
    assert body["errorCode"] == "A019" and body["message"] == "User username already exists"
    assert body["path"] == "/api/users" and body["timestamp"]


async def test_unknown_squad_validation_and_auth_errors_have_remnawaves_shapes(client):
    r = await create(client, activeInternalSquads=["5a1f2b3c-0000-4000-8000-00000000aa01"])
    assert (r.status_code, r.json()["errorCode"]) == (500, "A018")
    r = await create(client, username="a b")
    assert r.status_code == 400
    assert r.json()["message"] == "Validation failed" and r.json()["errors"][0]["path"] == [
        "username"]
    r = await client.get("/api/users", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json() == {"statusCode": 401, "message": "Unauthorized"}
    r = await client.get("/api/users", headers={"Authorization": "Bearer admin-jwt"})
    assert r.status_code == 403 and r.json()["message"] == "Forbidden"
    r = await client.get("/api/users", headers={"Authorization": "Bearer admin-jwt",
                                                "X-Remnawave-Client-Type": "browser"})
    assert r.status_code == 200


async def test_lookups_actions_and_delete(client):
    uid = (await create(client)).json()["response"]["id"]
    assert (await client.get("/api/users/by-username/vpn_a")).json()["response"]["id"] == uid
    r = await client.get("/api/users/by-username/nobody")
    assert (r.status_code, r.json()["errorCode"]) == (404, "A063")
    r = await client.post(f"/api/users/{uid}/actions/enable")
    assert (r.status_code, r.json()["errorCode"]) == (400, "A030")
    assert (await client.post(f"/api/users/{uid}/actions/disable")).json()["response"][
        "status"] == "DISABLED"
    r = await client.post(f"/api/users/{uid}/actions/disable")
    assert (r.status_code, r.json()["errorCode"]) == (400, "A029")
    r = await client.patch("/api/users", json={"id": 999, "status": "ACTIVE"})
    assert (r.status_code, r.json()["errorCode"]) == (404, "A025")
    r = await client.patch("/api/users", json={"id": uid, "status": "LIMITED"})
    assert r.status_code == 400  # only ACTIVE or DISABLED are set by hand
    r = await client.patch("/api/users", json={"id": uid, "expireAt": "2020-01-01T00:00:00Z"})
    assert r.status_code == 400  # an update's expiry must be in the future
    old = (await client.get(f"/api/users/{uid}")).json()["response"]["subscriptionUrl"]
    new = (await client.post(f"/api/users/{uid}/actions/revoke")).json()["response"]
    assert new["subscriptionUrl"] != old
    r = await client.delete(f"/api/users/{uid}")
    assert r.status_code == 204 and r.content == b""
    r = await client.post(f"/api/users/{uid}/actions/reset-traffic")
    assert (r.status_code, r.json()["errorCode"]) == (404, "A025")


async def test_limited_and_expired_users_come_back_as_the_panel_decides(client):
    uid = (await create(client, trafficLimitBytes=100)).json()["response"]["id"]
    r = await client.post("/_fake/users/vpn_a/traffic", json={"used_bytes": 100})
    assert r.json()["status"] == "LIMITED"
    # the same limit again keeps it LIMITED; a higher one lifts it
    r = await client.patch("/api/users", json={"id": uid, "trafficLimitBytes": 100})
    assert r.json()["response"]["status"] == "LIMITED"
    r = await client.patch("/api/users", json={"id": uid, "trafficLimitBytes": 200})
    assert r.json()["response"]["status"] == "ACTIVE"
    await client.post("/_fake/users/vpn_a/limited")
    r = await client.post(f"/api/users/{uid}/actions/reset-traffic")
    user = r.json()["response"]
    assert user["status"] == "ACTIVE" and user["userTraffic"]["usedTrafficBytes"] == 0
    await client.post("/_fake/users/vpn_a/expired")
    assert (await client.get(f"/api/users/{uid}")).json()["response"]["status"] == "EXPIRED"
    r = await client.patch("/api/users", json={"id": uid, "expireAt": LATER})
    assert r.json()["response"]["status"] == "ACTIVE"


async def test_paging_is_newest_first_and_at_most_1000(client):
    for name in ("vpn_1", "vpn_2", "vpn_3"):
        await create(client, username=name)
    r = await client.get("/api/users", params={"start": 0, "size": 2})
    page = r.json()["response"]
    assert page["total"] == 3 and [u["username"] for u in page["users"]] == ["vpn_3", "vpn_2"]
    assert (await client.get("/api/users", params={"size": 1001})).status_code == 400
    assert (await client.get("/api/users", params={"size": 1000})).status_code == 200


async def test_hwid_devices_and_the_device_limit(client):
    uid = (await create(client, hwidDeviceLimit=1)).json()["response"]["id"]
    assert (await client.post("/_fake/users/vpn_a/devices", json={"hwid": "h1"})).status_code \
        == 200
    assert (await client.post("/_fake/users/vpn_a/devices", json={"hwid": "h2"})).status_code \
        == 409
    body = (await client.get(f"/api/hwid/devices/{uid}")).json()["response"]
    assert body["total"] == 1 and body["devices"][0]["userId"] == uid
    r = await client.post("/api/hwid/devices/delete-all", json={"userId": uid})
    assert r.json()["response"]["total"] == 0


async def test_faults_answer_errors_after_the_work_when_asked(client):
    await client.post("/_fake/faults", json={"op": "create", "status": 503, "after": True,
                                             "times": 1})
    assert (await create(client)).status_code == 503
    assert (await client.get("/api/users/by-username/vpn_a")).status_code == 200  # created
    assert (await create(client, username="vpn_b")).status_code == 201  # only once


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_cli_serves_the_panel_and_cuts_calls_without_forwarded_headers():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fakes.remnawave", "--host", "127.0.0.1",
                             "--port", str(port), "--token", "cli-token"])
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(f"{base}/_fake/users", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the fake did not start"
                time.sleep(0.1)
        auth = {"Authorization": "Bearer cli-token"}
        with pytest.raises(httpx.TransportError):  # no HTTP answer at all
            httpx.get(f"{base}/api/users", headers=auth, timeout=5)
        with pytest.raises(httpx.TransportError):  # forwarded, but not as https
            httpx.get(f"{base}/api/users", timeout=5,
                      headers={**auth, "X-Forwarded-For": "1.2.3.4",
                               "X-Forwarded-Proto": "http"})
        r = httpx.post(f"{base}/api/users", headers={**auth, **FORWARDED}, timeout=5,
                       json={"username": "vpn_cli", "expireAt": LATER})
        assert r.status_code == 201
        assert r.json()["response"]["subscriptionUrl"].startswith(
            f"https://127.0.0.1:{port}/api/sub/")
        short = r.json()["response"]["shortUuid"]
        sub = httpx.get(f"{base}/api/sub/{short}", headers=FORWARDED, timeout=5)
        assert sub.status_code == 200 and "total=0" in sub.headers["subscription-userinfo"]
        httpx.post(f"{base}/_fake/faults", json={"op": "list", "drop": True, "times": 1})
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{base}/api/users", headers={**auth, **FORWARDED}, timeout=5)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
