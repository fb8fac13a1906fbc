"""The Marzban driver against the fake Marzban (v0.8.4) server over real HTTP."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
import sqlalchemy as sa

from contracts.billing import InvoicePaidV1, InvoiceRefundedV1, PlanSnapshot
from fakes.marzban import create_app
from provisioner.backends import AccountMissing, BackendError
from provisioner.backends.marzban import MarzbanBackend
from provisioner.models import Subscription
from provisioner.service import ProvisioningService
from runtime.identity import Identity
from runtime.testing import serve_in_thread

LATER = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
GB = 2**30


@pytest.fixture(scope="module")
def marzban():
    # The review runs only when a test asks, so a test sees the state before and after it.
    app = create_app(admin_username="admin", admin_password="pw", review_interval=None)
    with serve_in_thread(app, lifespan="off") as url:
        yield app.state.marzban, url


@pytest.fixture
async def driver(marzban):
    state, url = marzban
    state.users.clear()
    state.requests.clear()
    backend = MarzbanBackend(url, "admin", "pw", proxies=["vless"], data_limit_bytes=10 * GB,
                             timeout=5)
    yield backend
    await backend.close()


def token_requests(state) -> int:
    return sum(1 for r in state.requests if r == ("POST", "/api/admin/token"))


def resets(state, ref: str) -> int:
    return state.requests.count(("POST", f"/api/user/{ref}/reset"))


async def test_ensure_active_creates_then_updates_after_409(driver, marzban):
    state, _ = marzban
    await driver.ensure_active("vpn_m1", expires_at=LATER, max_devices=2)
    user = state.users["vpn_m1"]
    assert user.expire == int(LATER.timestamp()) and user.status == "active"
    assert user.data_limit == 10 * GB and user.data_limit_reset_strategy == "no_reset"
    assert user.inbounds == {"vless": ["VLESS TCP REALITY"]}  # "inbounds": {} = all of them
    vless_id = user.proxies["vless"]["id"]
    later = LATER + timedelta(days=30)
    await driver.ensure_active("vpn_m1", expires_at=later, max_devices=3)  # 409 → GET, PUT
    user = state.users["vpn_m1"]
    assert user.expire == int(later.timestamp()) and user.note == "max_devices=3"
    assert user.proxies["vless"]["id"] == vless_id  # the client's credentials are kept
    assert ("PUT", "/api/user/vpn_m1") in state.requests
    assert resets(state, "vpn_m1") == 0  # nothing was used up: no reset
    assert token_requests(state) == 1  # the token is cached


async def test_extend_of_an_expired_user_makes_it_active_again(driver, marzban):
    state, _ = marzban
    await driver.ensure_active("vpn_ex", expires_at=datetime.now(UTC) + timedelta(seconds=1),
                               max_devices=1)
    state.review(now=time.time() + 5)
    assert state.users["vpn_ex"].status == "expired"
    await driver.ensure_active("vpn_ex", expires_at=LATER, max_devices=1)
    assert state.users["vpn_ex"].status == "active"
    assert state.users["vpn_ex"].expire == int(LATER.timestamp())


async def test_disable_keeps_the_user_and_enable_brings_it_back(driver, marzban):
    state, _ = marzban
    await driver.ensure_active("vpn_m2", expires_at=LATER, max_devices=1)
    await driver.disable("vpn_m2")
    assert state.users["vpn_m2"].status == "disabled"
    assert await driver.accounts() == {"vpn_m2": False}
    await driver.ensure_active("vpn_m2", expires_at=LATER, max_devices=1)
    assert await driver.accounts() == {"vpn_m2": True}
    await driver.disable("vpn_missing")  # nothing to disable is fine


async def test_access_is_the_subscription_url_made_absolute_and_it_serves(driver, marzban):
    _, url = marzban
    await driver.ensure_active("vpn_m3", expires_at=LATER, max_devices=1)
    access = await driver.access("vpn_m3")
    assert access.access_url.startswith(f"{url}/sub/")
    assert access.config["links"] and access.config["status"] == "active"
    async with httpx.AsyncClient() as raw:
        sub = await raw.get(access.access_url)
    assert sub.status_code == 200 and "total=10737418240" in sub.headers["subscription-userinfo"]
    with pytest.raises(AccountMissing):
        await driver.access("vpn_nobody")


async def test_the_subscription_token_changes_once_a_second_not_per_read(driver, marzban):
    await driver.ensure_active("vpn_tok", expires_at=LATER, max_devices=1)
    for _ in range(5):  # two reads within one second give the same URL
        start = time.time()
        a = (await driver.access("vpn_tok")).access_url
        b = (await driver.access("vpn_tok")).access_url
        if int(time.time()) == int(start):
            assert a == b
            break
    else:
        pytest.fail("no two reads within one second")
    await asyncio.sleep(1.05)
    assert (await driver.access("vpn_tok")).access_url != a  # re-signed: never store it


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


async def test_a_server_that_is_down_is_a_backend_error_without_secrets():
    down = MarzbanBackend("http://127.0.0.1:9", "admin", "s3cret-pw", proxies=["vless"],
                          timeout=1)
    try:
        with pytest.raises(BackendError) as info:
            await down.ensure_active("vpn_down", expires_at=LATER, max_devices=1)
        assert "transport error" in str(info.value) and "s3cret-pw" not in str(info.value)
    finally:
        await down.close()


async def test_a_retry_after_a_lost_answer_converges_on_one_user(driver, marzban):
    state, _ = marzban
    await driver.accounts()  # logged in, so the lost answer is the create's
    state.lose_answers(1)  # the user is created but the answer never arrives
    with pytest.raises(BackendError):
        await driver.ensure_active("vpn_lost", expires_at=LATER, max_devices=1)
    assert "vpn_lost" in state.users
    await driver.ensure_active("vpn_lost", expires_at=LATER, max_devices=1)
    assert [u for u in state.users if u == "vpn_lost"] == ["vpn_lost"]
    assert state.users["vpn_lost"].status == "active"
    assert state.users["vpn_lost"].expire == int(LATER.timestamp())


async def test_twenty_concurrent_grants_make_one_user(driver, marzban):
    state, _ = marzban
    await asyncio.gather(*(driver.ensure_active("vpn_race", expires_at=LATER, max_devices=1)
                           for _ in range(20)))
    assert list(state.users) == ["vpn_race"]
    assert state.requests.count(("POST", "/api/user")) == 20  # one 200, nineteen 409s
    assert state.users["vpn_race"].status == "active"
    assert await driver.accounts() == {"vpn_race": True}


async def test_accounts_pages_through_every_user(driver, marzban, monkeypatch):
    state, _ = marzban
    monkeypatch.setattr("provisioner.backends.marzban.PAGE", 2)
    for i in range(5):
        await driver.ensure_active(f"vpn_p{i}", expires_at=LATER, max_devices=1)
    assert set(await driver.accounts()) == {f"vpn_p{i}" for i in range(5)}
    pages = [r for r in state.requests if r == ("GET", "/api/users")]
    assert len(pages) == 3  # 2 + 2 + 1
    await driver.probe()  # the health check: one page, however many users
    assert len([r for r in state.requests if r == ("GET", "/api/users")]) == 4


async def test_a_grants_own_traffic_limit_overrides_the_default(driver, marzban):
    state, _ = marzban
    await driver.ensure_active("vpn_m9", expires_at=LATER, max_devices=1,
                               data_limit_bytes=5 * GB)
    assert state.users["vpn_m9"].data_limit == 5 * GB
    await driver.ensure_active("vpn_m9", expires_at=LATER, max_devices=1)  # a paid plan after
    assert state.users["vpn_m9"].data_limit == 10 * GB


async def test_a_monthly_allowance_uses_marzbans_month_strategy(driver, marzban):
    state, _ = marzban
    await driver.ensure_active("vpn_mo", expires_at=LATER, max_devices=1,
                               data_limit_bytes=50 * GB, traffic_reset="MONTH")
    user = state.users["vpn_mo"]
    assert user.data_limit == 50 * GB and user.data_limit_reset_strategy == "month"
    # the plan changes to a one-off allowance: the strategy follows on the PUT
    await driver.ensure_active("vpn_mo", expires_at=LATER, max_devices=1,
                               data_limit_bytes=20 * GB, traffic_reset="NONE")
    assert user.data_limit == 20 * GB and user.data_limit_reset_strategy == "no_reset"
    with pytest.raises(BackendError):
        await driver.ensure_active("vpn_mo", expires_at=LATER, max_devices=1,
                                   traffic_reset="WEEKLY")


async def test_unlimited_traffic_sends_zero_and_no_reset(marzban):
    state, url = marzban
    state.users.clear()
    backend = MarzbanBackend(url, "admin", "pw", proxies=["vless"], timeout=5)
    try:
        await backend.ensure_active("vpn_unl", expires_at=LATER, max_devices=1,
                                    traffic_reset="MONTH")
        user = state.users["vpn_unl"]
        assert user.data_limit is None and user.data_limit_reset_strategy == "no_reset"
        usage = await backend.usage("vpn_unl")
        assert usage.limit_bytes is None and usage.resets_at is None and not usage.limited
    finally:
        await backend.close()


async def test_traffic_limit_is_enforced_and_a_regrant_makes_a_limited_user_usable(driver,
                                                                                    marzban):
    state, _ = marzban
    await driver.ensure_active("vpn_lim", expires_at=LATER, max_devices=1,
                               data_limit_bytes=1 * GB)
    state.use_traffic("vpn_lim", 1 * GB)
    state.review()
    assert state.users["vpn_lim"].status == "limited"  # the panel refuses connections
    assert await driver.accounts() == {"vpn_lim": True}  # the allowance, not drift to repair
    usage = await driver.usage("vpn_lim")
    assert usage.limited and usage.used_bytes == 1 * GB
    # A plain PUT keeps a limited user limited on the real server; the driver resets it.
    await driver.ensure_active("vpn_lim", expires_at=LATER + timedelta(days=30), max_devices=1,
                               data_limit_bytes=1 * GB)
    user = state.users["vpn_lim"]
    assert user.status == "active" and user.used_traffic == 0
    assert resets(state, "vpn_lim") == 1
    assert not (await driver.usage("vpn_lim")).limited


async def test_a_user_over_its_limit_before_the_review_is_reset_too(driver, marzban):
    state, _ = marzban
    await driver.ensure_active("vpn_pre", expires_at=LATER, max_devices=1,
                               data_limit_bytes=2 * GB)
    state.use_traffic("vpn_pre", 2 * GB)  # used up, the 10 s review has not run yet
    await driver.ensure_active("vpn_pre", expires_at=LATER, max_devices=1,
                               data_limit_bytes=2 * GB)
    assert state.users["vpn_pre"].status == "active" and state.users["vpn_pre"].used_traffic == 0


async def test_a_suspended_user_is_never_reset(driver, marzban):
    state, _ = marzban
    await driver.ensure_active("vpn_sus", expires_at=LATER, max_devices=1,
                               data_limit_bytes=1 * GB)
    state.use_traffic("vpn_sus", 1 * GB)
    state.review()
    await driver.disable("vpn_sus")
    await driver.disable("vpn_sus")  # a retried disable
    user = state.users["vpn_sus"]
    assert user.status == "disabled" and user.used_traffic == 1 * GB
    assert resets(state, "vpn_sus") == 0
    await driver.usage("vpn_sus")
    assert state.users["vpn_sus"].status == "disabled"  # reading usage changes nothing
    assert await driver.accounts() == {"vpn_sus": False}


async def test_the_reset_is_not_sent_when_the_put_fails(driver, marzban):
    state, _ = marzban
    await driver.ensure_active("vpn_rf", expires_at=LATER, max_devices=1,
                               data_limit_bytes=1 * GB)
    state.use_traffic("vpn_rf", 1 * GB)
    state.review()
    await driver.disable("vpn_rf")
    calls: list[str] = []

    class FailPut(httpx.AsyncBaseTransport):  # the GET passes, the PUT fails
        def __init__(self, inner):
            self.inner = inner

        async def handle_async_request(self, request):
            calls.append(request.method)
            if request.method == "PUT":
                return httpx.Response(500, json={"detail": "Internal Server Error"})
            return await self.inner.handle_async_request(request)

    driver._client._transport = FailPut(driver._client._transport)
    with pytest.raises(BackendError):
        await driver.ensure_active("vpn_rf", expires_at=LATER, max_devices=1,
                                   data_limit_bytes=1 * GB)
    assert "PUT" in calls and resets(state, "vpn_rf") == 0
    assert state.users["vpn_rf"].status == "disabled"


async def test_newly_enabled_protocols_reach_existing_users_on_regrant(driver, marzban):
    state, url = marzban
    await driver.ensure_active("vpn_pr", expires_at=LATER, max_devices=1)
    vless_id = state.users["vpn_pr"].proxies["vless"]["id"]
    both = MarzbanBackend(url, "admin", "pw", proxies=["vless", "vmess"], timeout=5)
    try:
        await both.ensure_active("vpn_pr", expires_at=LATER, max_devices=1)
    finally:
        await both.close()
    user = state.users["vpn_pr"]
    assert set(user.proxies) == {"vless", "vmess"}
    assert user.proxies["vless"]["id"] == vless_id  # the existing client keeps working
    assert user.inbounds == {"vless": ["VLESS TCP REALITY"], "vmess": ["VMess TCP"]}
    assert len((await driver.access("vpn_pr")).config["links"]) == 2
    await driver.ensure_active("vpn_pr", expires_at=LATER, max_devices=1)  # vless only
    assert set(state.users["vpn_pr"].proxies) == {"vless", "vmess"}  # nothing is removed


async def test_usage_maps_marzbans_fields(driver, marzban):
    state, _ = marzban
    assert driver.enforces_traffic and not driver.enforces_devices
    await driver.ensure_active("vpn_us", expires_at=LATER, max_devices=3,
                               data_limit_bytes=50 * GB, traffic_reset="MONTH")
    state.use_traffic("vpn_us", 7 * GB)
    usage = await driver.usage("vpn_us")
    created = datetime.fromtimestamp(state.users["vpn_us"].created_at, UTC)
    assert usage.used_bytes == 7 * GB and usage.limit_bytes == 50 * GB
    assert usage.resets_at == created + timedelta(days=30)  # Marzban's month: 30 days
    assert usage.devices_limit is None and usage.devices_used is None  # cannot tell
    assert not usage.limited
    await driver.ensure_active("vpn_us", expires_at=LATER, max_devices=3,
                               data_limit_bytes=50 * GB)
    assert (await driver.usage("vpn_us")).resets_at is None  # no_reset
    with pytest.raises(AccountMissing):
        await driver.usage("vpn_nobody")


async def test_the_next_reset_counts_from_the_drivers_own_reset(driver, marzban):
    state, _ = marzban
    await driver.ensure_active("vpn_nr", expires_at=LATER, max_devices=1,
                               data_limit_bytes=1 * GB, traffic_reset="MONTH")
    state.users["vpn_nr"].created_at -= 10 * 86400  # created ten days ago
    state.use_traffic("vpn_nr", 1 * GB)
    state.review()
    before = int(time.time())
    await driver.ensure_active("vpn_nr", expires_at=LATER, max_devices=1,
                               data_limit_bytes=1 * GB, traffic_reset="MONTH")
    resets_at = (await driver.usage("vpn_nr")).resets_at
    # Marzban counts its 30 days from the last reset, which was the driver's, just now
    assert before + 30 * 86400 <= resets_at.timestamp() <= time.time() + 30 * 86400
    state.use_traffic("vpn_nr", 300)
    state.run_reset_job(now=resets_at.timestamp() - 3600)
    assert state.users["vpn_nr"].used_traffic == 300  # not due an hour before
    state.run_reset_job(now=resets_at.timestamp() + 1)
    assert state.users["vpn_nr"].used_traffic == 0  # Marzban's own job renews it then


async def test_the_service_grants_shows_usage_and_revokes_on_marzban(db, marzban):
    """Grant → access → usage → a limited user re-granted → refund, through the service."""
    state, url = marzban
    state.users.clear()
    backend = MarzbanBackend(url, "admin", "pw", proxies=["vless"], timeout=5)
    service = ProvisioningService(backend)
    ts = datetime.now(UTC)

    def paid(invoice_id: str) -> InvoicePaidV1:
        return InvoicePaidV1(
            invoice_id=invoice_id, user_id="mz-user",
            plan=PlanSnapshot(plan_id="plan-m", name="Monthly", duration_days=30, max_devices=3,
                              price_usd=Decimal("9.99"), traffic_limit_gb=1,
                              traffic_reset="MONTH"),
            amount_usd=Decimal("9.99"), asset="USDT", network="TRON",
            amount_asset=Decimal("9.99"), amount_paid_asset=Decimal("9.99"), paid_at=ts)

    async def buy(event: InvoicePaidV1) -> None:
        async with db.transaction() as s:
            await service.record_paid(s, event, ts)
        async with db.transaction() as s:
            await service.apply_grant(s, event.invoice_id, ts)

    try:
        first = paid("inv-mz-1")
        await buy(first)
        async with db.transaction() as s:
            sub = (await s.execute(sa.select(Subscription)
                                   .where(Subscription.user_id == "mz-user"))).scalar_one()
        user = state.users[sub.provision_ref]
        assert user.status == "active" and user.data_limit == GB
        assert user.data_limit_reset_strategy == "month"
        me = Identity("mz-user", "USER")
        async with db.transaction() as s:
            out = await service.access(s, me, sub.id)
            assert out["backend"] == "marzban" and out["access_url"].startswith(f"{url}/sub/")
        state.use_traffic(sub.provision_ref, GB)
        state.review()
        async with db.transaction() as s:
            used = await service.usage(s, me, sub.id)
        assert used["used_bytes"] == GB and used["limit_bytes"] == GB and used["limited"]
        assert used["devices"] == {"limit": None, "used": None}
        # reconciliation leaves a limited user alone: no reset behind the customer's plan
        assert await service.reconcile(db, ts) == {}
        assert resets(state, sub.provision_ref) == 0 and user.status == "limited"
        await buy(paid("inv-mz-2"))  # a re-grant: usable again
        assert user.status == "active" and user.used_traffic == 0
        async with db.transaction() as s:
            await service.record_refund(s, InvoiceRefundedV1(
                invoice_id=first.invoice_id, user_id="mz-user", plan=first.plan,
                reason="customer asked", refunded_at=ts), ts)
        async with db.transaction() as s:
            await service.apply_refund(s, first.invoice_id, ts)
        async with db.transaction() as s:
            await service.record_refund(s, InvoiceRefundedV1(
                invoice_id="inv-mz-2", user_id="mz-user", plan=first.plan,
                reason="customer asked", refunded_at=ts), ts)
        async with db.transaction() as s:
            assert await service.apply_refund(s, "inv-mz-2", ts) == "revoked"
        assert user.status == "disabled"
        assert await backend.accounts() == {sub.provision_ref: False}
    finally:
        await backend.close()
