"""The Marzban driver against the fake Marzban server over real HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fakes.marzban import create_app
from provisioner.backends import AccountMissing, BackendError
from provisioner.backends.marzban import MarzbanBackend
from runtime.testing import serve_in_thread

LATER = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)


@pytest.fixture(scope="module")
def marzban():
    app = create_app(admin_username="admin", admin_password="pw")
    with serve_in_thread(app, lifespan="off") as url:
        yield app.state.marzban, url


@pytest.fixture
async def driver(marzban):
    state, url = marzban
    state.users.clear()
    state.requests.clear()
    backend = MarzbanBackend(url, "admin", "pw", proxies=["vless"], data_limit_bytes=10 * 2**30,
                             timeout=5)
    yield backend
    await backend.close()


def token_requests(state) -> int:
    return sum(1 for r in state.requests if r == ("POST", "/api/admin/token"))


async def test_ensure_active_creates_then_updates_after_409(driver, marzban):
    state, _ = marzban
    await driver.ensure_active("vpn_m1", expires_at=LATER, max_devices=2)
    user = state.users["vpn_m1"]
    assert user.expire == int(LATER.timestamp()) and user.status == "active"
    assert user.data_limit == 10 * 2**30
    assert user.inbounds == {"vless": ["VLESS TCP REALITY"]}  # "inbounds": {} = all of them
    later = LATER + timedelta(days=30)
    await driver.ensure_active("vpn_m1", expires_at=later, max_devices=2)  # 409 → PUT
    assert state.users["vpn_m1"].expire == int(later.timestamp())
    assert ("PUT", "/api/user/vpn_m1") in state.requests
    assert token_requests(state) == 1  # the token is cached


async def test_disable_keeps_the_user_and_enable_brings_it_back(driver, marzban):
    state, _ = marzban
    await driver.ensure_active("vpn_m2", expires_at=LATER, max_devices=1)
    await driver.disable("vpn_m2")
    assert state.users["vpn_m2"].status == "disabled"
    assert await driver.accounts() == {"vpn_m2": False}
    await driver.ensure_active("vpn_m2", expires_at=LATER, max_devices=1)
    assert await driver.accounts() == {"vpn_m2": True}
    await driver.disable("vpn_missing")  # nothing to disable is fine


async def test_access_is_the_subscription_url_made_absolute(driver, marzban):
    _, url = marzban
    await driver.ensure_active("vpn_m3", expires_at=LATER, max_devices=1)
    first = await driver.access("vpn_m3")
    second = await driver.access("vpn_m3")
    assert first.access_url.startswith(f"{url}/sub/")
    assert first.access_url != second.access_url  # the token changes between reads
    assert first.config["links"] and first.config["status"] == "active"
    with pytest.raises(AccountMissing):
        await driver.access("vpn_nobody")


async def test_revoked_token_is_renewed_once(driver, marzban):
    state, _ = marzban
    await driver.ensure_active("vpn_m4", expires_at=LATER, max_devices=1)
    state.revoke_tokens()
    await driver.disable("vpn_m4")
    assert state.users["vpn_m4"].status == "disabled"
    assert token_requests(state) == 2


async def test_wrong_credentials_and_server_errors_are_backend_errors(driver, marzban):
    state, url = marzban
    wrong = MarzbanBackend(url, "admin", "nope", proxies=["vless"], timeout=5)
    try:
        with pytest.raises(BackendError) as info:
            await wrong.accounts()
        assert "401" in str(info.value) and "nope" not in str(info.value)
    finally:
        await wrong.close()
    await driver.accounts()  # logged in
    state.inject_failures(1, status=502)
    with pytest.raises(BackendError) as info:
        await driver.ensure_active("vpn_m5", expires_at=LATER, max_devices=1)
    assert info.value.status == 502
    await driver.ensure_active("vpn_m5", expires_at=LATER, max_devices=1)  # a retry succeeds
    assert state.users["vpn_m5"].status == "active"


async def test_accounts_pages_through_every_user(driver, marzban, monkeypatch):
    monkeypatch.setattr("provisioner.backends.marzban.PAGE", 2)
    for i in range(5):
        await driver.ensure_active(f"vpn_p{i}", expires_at=LATER, max_devices=1)
    assert set(await driver.accounts()) == {f"vpn_p{i}" for i in range(5)}


async def test_a_grants_own_traffic_limit_overrides_the_default(driver, marzban):
    state, _ = marzban
    await driver.ensure_active("vpn_m9", expires_at=LATER, max_devices=1,
                               data_limit_bytes=5 * 2**30)
    assert state.users["vpn_m9"].data_limit == 5 * 2**30
    await driver.ensure_active("vpn_m9", expires_at=LATER, max_devices=1)  # a paid plan after
    assert state.users["vpn_m9"].data_limit == 10 * 2**30
