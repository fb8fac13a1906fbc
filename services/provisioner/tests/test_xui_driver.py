"""The 3x-ui driver against the fake 3x-ui panel over real HTTP (under a web base path)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from fakes.xui import create_app
from provisioner.backends import AccountMissing, BackendError
from provisioner.backends.xui import XuiBackend
from runtime.testing import serve_in_thread

LATER = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
GB = 2**30
BASE_PATH = "/s3cr3tpath/"
SUB = "https://sub.example.test:2096/sub/"


@pytest.fixture(scope="module")
def panel():
    app = create_app(username="admin", password="pw", base_path=BASE_PATH)
    with serve_in_thread(app, lifespan="off") as url:
        yield app.state.xui, url + BASE_PATH


def make(url: str, password: str = "pw", timeout: float = 5, **kw) -> XuiBackend:
    return XuiBackend(url, "admin", password, inbound_ids=kw.pop("inbound_ids", [1, 2]),
                      sub_base_url=SUB, data_limit_bytes=kw.pop("data_limit_bytes", 10 * GB),
                      timeout=timeout)


@pytest.fixture
async def driver(panel):
    state, url = panel
    state.reset()
    backend = make(url)
    yield backend
    await backend.close()


def posts(state, path: str) -> int:
    return sum(1 for r in state.requests if r == ("POST", path))


async def test_ensure_active_makes_one_client_on_every_inbound_then_updates_it(driver, panel):
    state, _ = panel
    await driver.ensure_active("vpn_x1", expires_at=LATER, max_devices=3)
    c = state.client("vpn_x1")
    assert c.inbound_ids == [1, 2]
    rec = c.record()
    assert rec["limitIp"] == 3 and rec["totalGB"] == 10 * GB and rec["enable"]
    assert rec["expiryTime"] == int(LATER.timestamp()) * 1000  # milliseconds
    assert rec["trafficReset"] == "never"
    sub_id = c.sub_id
    later = LATER + timedelta(days=30)
    await driver.ensure_active("vpn_x1", expires_at=later, max_devices=5,
                               traffic_reset="MONTH")  # "email already in use" → update
    rec = state.client("vpn_x1").record()
    assert rec["expiryTime"] == int(later.timestamp()) * 1000 and rec["limitIp"] == 5
    assert rec["trafficReset"] == "monthly" and rec["subId"] == sub_id
    assert posts(state, "/panel/api/clients/update/vpn_x1") == 1
    assert len(state.clients) == 1 and state.logins == 1  # the session is kept


async def test_disable_keeps_the_client_and_a_re_grant_brings_it_back(driver, panel):
    state, _ = panel
    await driver.ensure_active("vpn_x2", expires_at=LATER, max_devices=2)
    before = state.client("vpn_x2").record()
    await driver.disable("vpn_x2")
    after = state.client("vpn_x2").record()
    assert not after["enable"]
    # update replaces the whole client: what was not ours to change is sent back unchanged
    assert {k: after[k] for k in ("limitIp", "totalGB", "expiryTime", "subId", "uuid")} == \
        {k: before[k] for k in ("limitIp", "totalGB", "expiryTime", "subId", "uuid")}
    assert await driver.accounts() == {"vpn_x2": False}
    await driver.ensure_active("vpn_x2", expires_at=LATER, max_devices=2)
    assert await driver.accounts() == {"vpn_x2": True}
    await driver.disable("vpn_missing")  # nothing to disable is fine


async def test_a_disabled_client_keeps_no_reset_cycle_that_would_re_enable_it(driver, panel):
    state, _ = panel
    await driver.ensure_active("vpn_r1", expires_at=LATER, max_devices=1,
                               data_limit_bytes=GB, traffic_reset="MONTH")
    state.use_up("vpn_r1")  # off for its allowance; the panel's monthly job would turn it on
    await driver.disable("vpn_r1")
    rec = state.client("vpn_r1").record()
    assert not rec["enable"] and rec["trafficReset"] == "never"
    assert state.run_traffic_reset("monthly") == []
    assert not state.client("vpn_r1").enable
    await driver.ensure_active("vpn_r1", expires_at=LATER, max_devices=1,
                               data_limit_bytes=GB, traffic_reset="MONTH")
    rec = state.client("vpn_r1").record()
    assert rec["enable"] and rec["trafficReset"] == "monthly"


async def test_access_is_the_subscription_link_of_the_clients_sub_id(driver, panel):
    state, _ = panel
    await driver.ensure_active("vpn_x3", expires_at=LATER, max_devices=1)
    access = await driver.access("vpn_x3")
    assert access.access_url == SUB + state.client("vpn_x3").sub_id
    assert access.config["inbound_ids"] == [1, 2] and access.config["enable"] is True
    assert (await driver.access("vpn_x3")).access_url == access.access_url
    with pytest.raises(AccountMissing):
        await driver.access("vpn_nobody")


async def test_an_expired_session_means_one_new_login(driver, panel):
    state, _ = panel
    await driver.ensure_active("vpn_x4", expires_at=LATER, max_devices=1)
    state.expire_sessions()
    await driver.disable("vpn_x4")
    assert not state.client("vpn_x4").enable
    assert state.logins == 2


async def test_the_panel_requires_the_session_and_its_csrf_token(panel):
    _, url = panel
    async with httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("panel/api/inbounds/list")).status_code == 404
        assert (await http.get("panel/api/inbounds/list",
                               headers={"X-Requested-With": "XMLHttpRequest"})).status_code == 401
        token = (await http.get("csrf-token")).json()["obj"]
        assert (await http.post("login", data={"username": "admin", "password": "pw"})
                ).status_code == 403  # no CSRF token
        answer = await http.post("login", data={"username": "admin", "password": "pw"},
                                 headers={"X-CSRF-Token": token})
        assert answer.status_code == 200 and answer.json()["success"] is True
        wrong = await http.post("login", data={"username": "admin", "password": "no"},
                                headers={"X-CSRF-Token": token})
        assert wrong.status_code == 200 and wrong.json()["success"] is False
        listed = (await http.get("panel/api/inbounds/list")).json()
        assert isinstance(listed["obj"][0]["settings"], str)  # JSON in a string
        assert (await http.post("panel/api/clients/add", json={})).status_code == 403


async def test_wrong_credentials_panel_errors_and_outages_are_backend_errors(driver, panel):
    state, url = panel
    wrong = make(url, password="not-the-password")
    try:
        with pytest.raises(BackendError) as info:
            await wrong.accounts()
        assert "login refused" in str(info.value)
        assert "not-the-password" not in str(info.value) and url not in str(info.value)
    finally:
        await wrong.close()
    await driver.accounts()  # logged in
    state.inject_failures(1, status=200, msg="Something went wrong (database is locked)")
    with pytest.raises(BackendError) as info:  # HTTP 200 with success false
        await driver.ensure_active("vpn_x5", expires_at=LATER, max_devices=1)
    assert "database is locked" in str(info.value) and info.value.status == 200
    state.inject_failures(1, status=502)
    with pytest.raises(BackendError) as info:
        await driver.ensure_active("vpn_x5", expires_at=LATER, max_devices=1)
    assert info.value.status == 502
    await driver.ensure_active("vpn_x5", expires_at=LATER, max_devices=1)  # a retry succeeds
    assert state.client("vpn_x5").enable
    gone = make(url.replace(BASE_PATH, "/wrong-path/"))
    try:
        with pytest.raises(BackendError) as info:
            await gone.accounts()
        assert "base path" in str(info.value) and "wrong-path" not in str(info.value)
    finally:
        await gone.close()


async def test_a_hanging_or_unreachable_panel_is_a_transport_error(panel):
    state, url = panel
    state.reset()
    quick = make(url, timeout=0.5)
    try:
        await quick.accounts()
        state.hang(1, 3)
        with pytest.raises(BackendError) as info:
            await quick.accounts()
        assert "transport error" in str(info.value)
    finally:
        await quick.close()
    down = make("http://127.0.0.1:9/x/", timeout=1)
    try:
        with pytest.raises(BackendError) as info:
            await down.access("vpn_any")
        assert "transport error" in str(info.value) and "127.0.0.1" not in str(info.value)
    finally:
        await down.close()


async def test_a_retry_after_a_lost_answer_converges_on_one_client(panel):
    state, url = panel
    state.reset()
    quick = make(url, timeout=0.5)
    try:
        await quick.accounts()
        state.hang(1, 2, after=True)  # the add is carried out, its answer is lost
        with pytest.raises(BackendError):
            await quick.ensure_active("vpn_x6", expires_at=LATER, max_devices=2)
        assert state.client("vpn_x6") is not None
        await asyncio.sleep(2)
        await quick.ensure_active("vpn_x6", expires_at=LATER, max_devices=2)
    finally:
        await quick.close()
    assert [c.email for c in state.clients.values()] == ["vpn_x6"]
    assert state.client("vpn_x6").enable


async def test_a_client_left_on_some_inbounds_is_attached_to_the_rest(driver, panel):
    state, url = panel
    one = make(url, inbound_ids=[1])
    try:
        await one.ensure_active("vpn_x7", expires_at=LATER, max_devices=1)
    finally:
        await one.close()
    assert await driver.accounts() == {"vpn_x7": False}  # missing on inbound 2
    await driver.ensure_active("vpn_x7", expires_at=LATER, max_devices=1)
    assert state.client("vpn_x7").inbound_ids == [1, 2]
    assert await driver.accounts() == {"vpn_x7": True}


async def test_twenty_concurrent_grants_make_one_client(driver, panel):
    state, _ = panel
    await asyncio.gather(*(driver.ensure_active("vpn_x8", expires_at=LATER, max_devices=2)
                           for _ in range(20)))
    assert [c.email for c in state.clients.values()] == ["vpn_x8"]
    assert state.client("vpn_x8").inbound_ids == [1, 2] and state.logins == 1


async def test_a_lost_add_race_duplicate_email_ends_in_an_update(driver, panel):
    state, _ = panel
    state.race_emails.add("vpn_x9")
    await driver.ensure_active("vpn_x9", expires_at=LATER, max_devices=4)
    assert posts(state, "/panel/api/clients/update/vpn_x9") == 1
    assert len(state.clients) == 1 and state.client("vpn_x9").record()["limitIp"] == 4


async def test_accounts_reads_every_configured_inbounds_clients(driver, panel):
    state, url = panel
    for ref in ("vpn_a1", "vpn_a2", "vpn_a3", "vpn_a4"):
        await driver.ensure_active(ref, expires_at=LATER, max_devices=1)
    await driver.disable("vpn_a2")
    state.use_up("vpn_a3")  # switched off by the panel for its allowance: not drift
    state.expire("vpn_a4")  # switched off for its time
    other = make(url, inbound_ids=[1])
    try:
        await other.ensure_active("someone-elses", expires_at=LATER, max_devices=1)
    finally:
        await other.close()
    assert await driver.accounts() == {"vpn_a1": True, "vpn_a2": False, "vpn_a3": True,
                                       "vpn_a4": False}


async def test_traffic_limit_enforced_then_a_re_grant_makes_it_usable(driver, panel):
    state, _ = panel
    await driver.ensure_active("vpn_t1", expires_at=LATER, max_devices=1,
                               data_limit_bytes=5 * GB, traffic_reset="MONTH")
    state.set_traffic("vpn_t1", GB, 4 * GB)  # the allowance is used up: the panel turns it off
    assert not state.client("vpn_t1").enable
    usage = await driver.usage("vpn_t1")
    assert usage.limited and usage.used_bytes == 5 * GB and usage.limit_bytes == 5 * GB
    await driver.ensure_active("vpn_t1", expires_at=LATER, max_devices=1,
                               data_limit_bytes=5 * GB, traffic_reset="MONTH")
    c = state.client("vpn_t1")
    assert c.enable and c.up + c.down == 0
    assert posts(state, "/panel/api/clients/resetTraffic/vpn_t1") == 1
    assert not (await driver.usage("vpn_t1")).limited
    await driver.ensure_active("vpn_t1", expires_at=LATER, max_devices=1,
                               data_limit_bytes=5 * GB)
    assert posts(state, "/panel/api/clients/resetTraffic/vpn_t1") == 1  # not used up: no reset


async def test_usage_maps_the_clients_traffic_and_limits(driver, panel):
    state, _ = panel
    await driver.ensure_active("vpn_u1", expires_at=LATER, max_devices=3,
                               data_limit_bytes=8 * GB, traffic_reset="MONTH")
    state.set_traffic("vpn_u1", 123, 456)
    usage = await driver.usage("vpn_u1")
    assert (usage.used_bytes, usage.limit_bytes, usage.devices_limit) == (579, 8 * GB, 3)
    assert not usage.limited and usage.devices_used is None  # no IP seen: cannot tell
    async with httpx.AsyncClient(base_url=panel[1] + "_fake/") as http:
        await http.post("clients/vpn_u1/ips", json={"ips": ["10.0.0.1", "10.0.0.2"]})
    assert (await driver.usage("vpn_u1")).devices_used == 2
    now = datetime.now(UTC)
    assert usage.resets_at > now and usage.resets_at.day == 1 and usage.resets_at.hour == 0
    assert usage.resets_at - now <= timedelta(days=31)
    await driver.ensure_active("vpn_u2", expires_at=LATER, max_devices=1, data_limit_bytes=0)
    unlimited = await driver.usage("vpn_u2")
    assert unlimited.limit_bytes is None and unlimited.resets_at is None
    assert unlimited.used_bytes == 0 and not unlimited.limited
    with pytest.raises(AccountMissing):
        await driver.usage("vpn_nobody")
    assert driver.enforces_devices and driver.enforces_traffic


async def test_a_grants_own_traffic_limit_overrides_the_default(driver, panel):
    state, _ = panel
    await driver.ensure_active("vpn_x10", expires_at=LATER, max_devices=1,
                               data_limit_bytes=5 * GB)
    assert state.client("vpn_x10").record()["totalGB"] == 5 * GB
    await driver.ensure_active("vpn_x10", expires_at=LATER, max_devices=1)  # a paid plan after
    assert state.client("vpn_x10").record()["totalGB"] == 10 * GB


async def test_the_fakes_control_api_over_http(driver, panel):
    state, url = panel
    await driver.ensure_active("vpn_c1", expires_at=LATER, max_devices=1, traffic_reset="MONTH")
    async with httpx.AsyncClient(base_url=url + "_fake/") as http:
        assert (await http.post("clients/vpn_c1/traffic", json={"up": 7, "down": 8})).is_success
        assert (await driver.usage("vpn_c1")).used_bytes == 15
        assert (await http.post("clients/vpn_c1/use-up")).is_success
        assert (await driver.usage("vpn_c1")).limited
        assert (await http.post("clients/vpn_nobody/expire")).status_code == 404
        assert (await http.post("traffic-reset", json={"period": "monthly"})).json() == {
            "reset": ["vpn_c1"]}
        assert not (await driver.usage("vpn_c1")).limited
        assert (await http.post("sessions/expire")).is_success
        assert (await http.post("fail", json={"count": 1, "status": 200,
                                              "msg": "nope"})).is_success
        with pytest.raises(BackendError):
            await driver.access("vpn_c1")
        snapshot = (await http.get("state")).json()
        assert [c["email"] for c in snapshot["clients"]] == ["vpn_c1"]
        assert snapshot["logins"] == 2
        assert json.dumps(snapshot)  # plain JSON


def test_settings_name_what_the_xui_backend_needs_and_build_it():
    from provisioner.backends import build_backend
    from provisioner.config import Settings
    from runtime.testing import unit_database_url

    with pytest.raises(ValueError, match="XUI_INBOUND_IDS, XUI_SUB_BASE_URL"):
        Settings(DATABASE_URL=unit_database_url("provisioner"), VPN_BACKEND="xui",
                 XUI_BASE_URL="https://panel.example:2053/path/", XUI_USERNAME="admin",
                 XUI_PASSWORD="pw")
    settings = Settings(DATABASE_URL=unit_database_url("provisioner"), VPN_BACKEND="xui",
                        XUI_BASE_URL="https://panel.example:2053/path", XUI_USERNAME="admin",
                        XUI_PASSWORD="pw", XUI_INBOUND_IDS="1, 3", XUI_SUB_BASE_URL=SUB)
    backend = build_backend(settings, None)
    assert isinstance(backend, XuiBackend)
    assert backend.inbound_ids == [1, 3] and backend.sub_base_url == SUB
    assert str(backend._client.base_url) == "https://panel.example:2053/path/"
