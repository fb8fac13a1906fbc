"""Live exchange rates (RATE_SOURCE=cryptopay): Crypto Pay's rates, fresh or refused.

The cache's rules with a controlled clock and source, then billing's API against the Crypto Pay
fake over real HTTP: the fresh rate prices the invoice and is stored on it; a stale or missing
rate is 503 SERVICE_UNAVAILABLE with no invoice stored; invoices resume when the source returns.
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import httpx
import pytest

from billing.app import create_api
from billing.providers.base import ProviderError
from billing.rates import CryptoPayRateSource, FixedRateSource, usd_rates
from billing.wiring import build_rates
from fakes.cryptopay import FakeConfig
from fakes.cryptopay import create_app as create_fake
from runtime import identity
from runtime.errors import ServiceUnavailable
from runtime.testing import serve_in_thread

from .conftest import make_settings

TOKEN = "777:rates-test-token"
SIGNING_KEY = "dev-internal-signing-key-change-me"


def rate(source: str, value: str, target: str = "USD", valid: bool = True) -> dict:
    return {"is_valid": valid, "is_crypto": True, "is_fiat": False, "source": source,
            "target": target, "rate": value}


class Source:
    """Stands in for the Crypto Pay client: answers `rates`, or fails while `down`."""

    def __init__(self, rates: list[dict]):
        self.rates = rates
        self.down = False
        self.calls = 0

    async def call(self, operation: str, method: str, params=None):
        assert method == "getExchangeRates"
        self.calls += 1
        await asyncio.sleep(0)
        if self.down:
            raise ProviderError("cryptopay", operation, "HTTP 500: 500 INTERNAL_ERROR")
        return self.rates

    async def close(self) -> None:
        return None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def live(source: Source, clock: Clock, max_age: float = 300) -> CryptoPayRateSource:
    return CryptoPayRateSource(source, max_age, retry_seconds=1, clock=clock)


def test_only_valid_rates_to_usd_are_kept():
    assert usd_rates([
        rate("BTC", "60000.5"), rate("BTC", "55000", target="EUR"),
        rate("ETH", "3000", valid=False), rate("TON", "0"), rate("LTC", "nan?"),
        {"source": "USDT"}, rate("usdt", "0.999"),
    ]) == {"BTC": Decimal("60000.5"), "USDT": Decimal("0.999")}
    with pytest.raises(ValueError):
        usd_rates({"items": []})


async def test_a_fresh_rate_is_used_and_fetched_once():
    source, clock = Source([rate("BTC", "61000")]), Clock()
    rates = live(source, clock)
    assert await rates.usd_per_unit("btc") == Decimal("61000")
    clock.now += 100
    assert await rates.usd_per_unit("BTC") == Decimal("61000")
    assert source.calls == 1
    # USD is 1 without asking anyone
    assert await rates.usd_per_unit("USD") == 1 and source.calls == 1


async def test_refresh_in_the_background_after_half_the_age():
    source, clock = Source([rate("BTC", "61000")]), Clock()
    rates = live(source, clock)
    await rates.usd_per_unit("BTC")
    source.rates = [rate("BTC", "62000")]
    clock.now += 200  # past half of 300: this answer is the cached rate, a refresh starts
    assert await rates.usd_per_unit("BTC") == Decimal("61000")
    await asyncio.sleep(0.01)
    assert source.calls == 2
    assert await rates.usd_per_unit("BTC") == Decimal("62000")


async def test_a_stale_rate_is_refused_then_recovers():
    source, clock = Source([rate("BTC", "61000")]), Clock()
    rates = live(source, clock)
    await rates.usd_per_unit("BTC")
    source.down = True
    clock.now += 200
    assert await rates.usd_per_unit("BTC") == Decimal("61000")  # younger than the max age
    await asyncio.sleep(0.01)
    clock.now += 100  # 300 s old: stale
    with pytest.raises(ServiceUnavailable) as refused:
        await rates.usd_per_unit("BTC")
    assert refused.value.status == 503 and refused.value.code == "SERVICE_UNAVAILABLE"
    calls = source.calls
    with pytest.raises(ServiceUnavailable):  # within retry_seconds: no new call, still refused
        await rates.usd_per_unit("BTC")
    assert source.calls == calls
    source.down = False
    source.rates = [rate("BTC", "59000")]
    clock.now += 1
    assert await rates.usd_per_unit("BTC") == Decimal("59000")


async def test_a_missing_asset_is_refused_without_hammering_the_source():
    source, clock = Source([rate("BTC", "61000"), rate("ETH", "3000", valid=False)]), Clock()
    rates = live(source, clock)
    for asset in ("ETH", "XMR", "ETH"):
        with pytest.raises(ServiceUnavailable) as refused:
            await rates.usd_per_unit(asset)
        assert refused.value.details == {"asset": asset}
    assert source.calls == 1


async def test_no_rate_ever_is_refused():
    source, clock = Source([]), Clock()
    source.down = True
    with pytest.raises(ServiceUnavailable):
        await live(source, clock).usd_per_unit("BTC")


async def test_concurrent_requests_share_one_refresh():
    source, clock = Source([rate("BTC", "61000")]), Clock()
    rates = live(source, clock)
    got = await asyncio.gather(*(rates.usd_per_unit("BTC") for _ in range(20)))
    assert set(got) == {Decimal("61000")}
    assert source.calls == 1


async def test_fixed_rates_stay_the_default():
    rates = build_rates(make_settings())
    assert isinstance(rates, FixedRateSource)
    assert await rates.usd_per_unit("BTC") == Decimal("60000")
    assert await rates.usd_per_unit("USD") == 1
    live_rates = build_rates(make_settings(RATE_SOURCE="cryptopay", RATES_MAX_AGE_SECONDS="60"))
    assert isinstance(live_rates, CryptoPayRateSource) and live_rates.max_age == 60
    await live_rates.close()


# ----------------------------------------------------------------------------- billing's API


def as_user(user: str, role: str = "USER") -> dict[str, str]:
    return {identity.HEADER: identity.sign(SIGNING_KEY, user, role, audience="billing")}


async def test_billing_prices_with_live_rates_and_refuses_stale_ones(migrated, pg):
    with serve_in_thread(create_fake(FakeConfig(token=TOKEN))) as fake_url:
        settings = make_settings(PAYMENT_PROVIDER="sandbox", RATE_SOURCE="cryptopay",
                                 CRYPTOPAY_API_BASE=f"{fake_url}/api", CRYPTOPAY_TOKEN=TOKEN,
                                 RATES_MAX_AGE_SECONDS="1", PROVIDER_TIMEOUT_SECONDS="2")
        with serve_in_thread(create_api(settings)) as billing_url:
            async with (httpx.AsyncClient(base_url=fake_url, timeout=30) as fake,
                        httpx.AsyncClient(base_url=billing_url, timeout=30) as billing):
                await _live_rates_scenario(fake, billing, pg)


async def _live_rates_scenario(fake: httpx.AsyncClient, billing: httpx.AsyncClient, pg) -> None:
    user = f"rates-{uuid.uuid4().hex[:8]}"
    r = await billing.post("/internal/admin/plans", headers=as_user("admin", "ADMIN"), json={
        "name": f"rates-{uuid.uuid4().hex[:8]}", "price_usd": "30.00", "duration_days": 30,
        "max_devices": 1})
    plan_id = r.json()["plan"]["id"]

    async def buy(asset: str, network: str) -> httpx.Response:
        return await billing.post(
            "/internal/invoices", headers={**as_user(user), "Idempotency-Key": uuid.uuid4().hex},
            json={"plan_id": plan_id, "asset": asset, "network": network})

    async def stored() -> int:
        return await pg.fetchval("SELECT count(*) FROM billing.invoices WHERE user_id = $1", user)

    # a fresh rate prices the invoice and is stored on it
    await fake.post("/_fake/rates", json={"usd": {"BTC": "50000", "ETH": None}})
    r = await buy("BTC", "BITCOIN")
    assert r.status_code == 201, r.text
    assert r.json()["invoice"]["amount_asset"] == "0.00060000"
    assert await pg.fetchval("SELECT rate_usd FROM billing.invoices WHERE id = $1",
                             r.json()["invoice"]["id"]) == Decimal("50000")

    # an asset Crypto Pay has no rate for
    r = await buy("ETH", "ETHEREUM")
    assert r.status_code == 503 and r.json()["code"] == "SERVICE_UNAVAILABLE", r.text
    assert r.json()["details"] == {"asset": "ETH"}
    assert await stored() == 1

    # the source fails and the cached rate grows older than RATES_MAX_AGE_SECONDS
    await fake.post("/_fake/faults", json={"method": "getExchangeRates", "status": 500})
    await asyncio.sleep(1.2)
    r = await buy("BTC", "BITCOIN")
    assert r.status_code == 503 and r.json()["code"] == "SERVICE_UNAVAILABLE", r.text
    assert await stored() == 1  # never a wrong price: no invoice

    # the source returns with a new price: invoices resume at it
    await fake.delete("/_fake/faults")
    await fake.post("/_fake/rates", json={"usd": {"BTC": "40000"}})
    await asyncio.sleep(1.1)  # past the pause after a failed refresh
    r = await buy("BTC", "BITCOIN")
    assert r.status_code == 201, r.text
    assert r.json()["invoice"]["amount_asset"] == "0.00075000"
    assert await stored() == 2
