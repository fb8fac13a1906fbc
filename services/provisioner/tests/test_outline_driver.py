"""The Outline driver against the fake Outline server over real HTTPS with a pinned certificate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from fakes.outline import create_app
from provisioner.backends import AccountMissing, BackendError
from provisioner.backends.outline import (
    CertificatePinMismatch,
    OutlineBackend,
    parse_fingerprint,
)
from runtime.testing import serve_in_thread

SECRET = "Xk3pQ9-secret-path"
LATER = datetime.now(UTC) + timedelta(days=30)


@pytest.fixture(scope="module")
def certs(certificates):
    return certificates


@pytest.fixture(scope="module")
def outline(certs):
    cert, _ = certs
    app = create_app(SECRET, hostname="vpn.example.test")
    with serve_in_thread(app, lifespan="off", ssl_certfile=cert.certfile,
                         ssl_keyfile=cert.keyfile) as url:
        yield app.state.outline, f"{url}/{SECRET}"


@pytest.fixture
async def driver(outline, certs):
    state, api_url = outline
    state.keys.clear()
    state.requests.clear()
    backend = OutlineBackend(api_url, certs[0].sha256, key_secret="test-secret",
                             data_limit_bytes=50 * 2**30, timeout=5)
    yield backend
    await backend.close()


async def test_ensure_active_creates_one_key_with_the_callers_id(driver, outline):
    state, _ = outline
    await driver.ensure_active("vpn_aaa", expires_at=LATER, max_devices=3)
    await driver.ensure_active("vpn_aaa", expires_at=LATER + timedelta(days=1), max_devices=3)
    assert list(state.keys) == ["vpn_aaa"]
    assert state.keys["vpn_aaa"].data_limit == 50 * 2**30
    puts = [r for r in state.requests if r == ("PUT", f"/{SECRET}/access-keys/vpn_aaa")]
    assert len(puts) == 2  # the second answered 409 and was accepted as "already there"
    access = await driver.access("vpn_aaa")
    assert access.access_url.startswith("ss://") and "vpn.example.test" in access.access_url
    assert access.config["data_limit_bytes"] == 50 * 2**30


async def test_conflict_from_an_earlier_try_fixes_the_data_limit(driver, outline):
    state, api_url = outline
    async with httpx.AsyncClient(verify=False) as raw:  # an earlier try without a limit
        r = await raw.put(f"{api_url}/access-keys/vpn_bbb", json={"name": "vpn_bbb"})
        assert r.status_code == 201
    await driver.ensure_active("vpn_bbb", expires_at=LATER, max_devices=1)
    assert state.keys["vpn_bbb"].data_limit == 50 * 2**30


async def test_disable_deletes_and_enable_recreates_the_same_url(driver, outline):
    state, _ = outline
    await driver.ensure_active("vpn_ccc", expires_at=LATER, max_devices=1)
    before = (await driver.access("vpn_ccc")).access_url
    await driver.disable("vpn_ccc")
    assert "vpn_ccc" not in state.keys
    await driver.disable("vpn_ccc")  # already gone: 404 is fine
    with pytest.raises(AccountMissing):
        await driver.access("vpn_ccc")
    await driver.ensure_active("vpn_ccc", expires_at=LATER, max_devices=1)
    assert (await driver.access("vpn_ccc")).access_url == before


async def test_accounts_lists_only_our_keys(driver, outline):
    _, api_url = outline
    async with httpx.AsyncClient(verify=False) as raw:
        await raw.post(f"{api_url}/access-keys")  # someone else's key on a shared server
    await driver.ensure_active("vpn_ddd", expires_at=LATER, max_devices=1)
    assert await driver.accounts() == {"vpn_ddd": True}


async def test_wrong_certificate_is_refused_before_the_request_is_sent(outline, certs):
    state, api_url = outline
    state.requests.clear()
    impostor_pin = certs[1].sha256
    backend = OutlineBackend(api_url, impostor_pin, key_secret="k", timeout=5)
    try:
        with pytest.raises(CertificatePinMismatch):
            await backend.ensure_active("vpn_eee", expires_at=LATER, max_devices=1)
    finally:
        await backend.close()
    assert state.requests == []  # the secret path never reached the server
    assert "vpn_eee" not in state.keys


async def test_server_errors_are_reported_without_the_secret_url(driver, outline):
    state, _ = outline
    state.inject_failures(1, status=500)
    with pytest.raises(BackendError) as info:
        await driver.ensure_active("vpn_fff", expires_at=LATER, max_devices=1)
    assert "500" in str(info.value) and SECRET not in str(info.value)


async def test_unreachable_server_is_a_backend_error(certs):
    backend = OutlineBackend("https://127.0.0.1:9/x", certs[0].sha256, key_secret="k", timeout=2)
    try:
        with pytest.raises(BackendError) as info:
            await backend.accounts()
    finally:
        await backend.close()
    assert "/x" not in str(info.value)


def test_fingerprint_formats():
    hexpin = "AB" * 32
    assert parse_fingerprint(hexpin) == bytes.fromhex(hexpin)
    assert parse_fingerprint(":".join(["ab"] * 32)) == bytes.fromhex(hexpin)
    for bad in ("AB" * 31, "zz" * 32):
        with pytest.raises(ValueError):
            parse_fingerprint(bad)
    with pytest.raises(ValueError):
        OutlineBackend("http://127.0.0.1/x", hexpin, key_secret="k")


async def test_a_grants_own_traffic_limit_overrides_the_default(driver, outline):
    state, _ = outline
    await driver.ensure_active("vpn_ccc", expires_at=LATER, max_devices=1,
                               data_limit_bytes=5 * 2**30)
    assert state.keys["vpn_ccc"].data_limit == 5 * 2**30
    await driver.ensure_active("vpn_ccc", expires_at=LATER, max_devices=1)  # 409: fixed
    assert state.keys["vpn_ccc"].data_limit == 50 * 2**30


async def test_usage_is_the_keys_30_day_transfer_against_its_limit(driver, outline):
    state, _ = outline
    state.transfer.clear()
    state.default_data_limit = None
    assert driver.enforces_traffic and not driver.enforces_devices
    await driver.ensure_active("vpn_use", expires_at=LATER, max_devices=2,
                               data_limit_bytes=2 * 2**30)
    usage = await driver.usage("vpn_use")
    assert (usage.used_bytes, usage.limit_bytes, usage.limited) == (0, 2 * 2**30, False)
    assert usage.resets_at is None  # a rolling 30-day window: no reset date
    assert usage.devices_limit is None and usage.devices_used is None
    state.transfer.update({"vpn_use": 2 * 2**30, "vpn_other": 7})
    usage = await driver.usage("vpn_use")
    assert usage.used_bytes == 2 * 2**30 and not usage.limited  # the server drops it past it
    state.transfer["vpn_use"] = 2 * 2**30 + 1
    assert (await driver.usage("vpn_use")).limited
    with pytest.raises(AccountMissing):
        await driver.usage("vpn_nobody")


async def test_usage_of_a_key_without_a_limit_shows_the_servers_default(outline, certs):
    state, api_url = outline
    state.keys.clear()
    state.transfer.clear()
    unlimited = OutlineBackend(api_url, certs[0].sha256, key_secret="test-secret", timeout=5)
    try:
        await unlimited.ensure_active("vpn_def", expires_at=LATER, max_devices=1)
        assert (await unlimited.usage("vpn_def")).limit_bytes is None
        state.default_data_limit = 3 * 2**30
        usage = await unlimited.usage("vpn_def")
        assert usage.limit_bytes == 3 * 2**30 and usage.used_bytes == 0
    finally:
        state.default_data_limit = None
        await unlimited.close()
    wrong = OutlineBackend(api_url + "x", certs[0].sha256, key_secret="test-secret", timeout=5)
    try:  # a wrong API prefix is a configuration error, never "no such key"
        with pytest.raises(BackendError) as info:
            await wrong.usage("vpn_def")
        assert not isinstance(info.value, AccountMissing) and info.value.status == 404
    finally:
        await wrong.close()
