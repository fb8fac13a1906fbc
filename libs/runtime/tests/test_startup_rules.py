"""What a process checks before it serves: production refuses the sandbox adapters (unless a
staging cluster allows them, with a warning), a refused configuration exits with its reasons,
forwarded headers are believed only from TRUSTED_PROXIES, internal API docs are dev-only."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from pydantic import Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from runtime.service import ServiceDefinition, internal_api_docs, load_settings, uvicorn_options
from runtime.settings import ServiceSettings
from runtime.testing import serving

PRODUCTION = {"APP_ENV": "production", "INTERNAL_SIGNING_KEY": "k" * 32,
              "db_password": "a-real-password"}


class AdapterSettings(ServiceSettings):
    service_name: ClassVar[str] = "adapters"
    payment_provider: str = Field("sandbox", alias="PAYMENT_PROVIDER")

    def sandbox_adapters(self) -> dict[str, bool]:
        return {**super().sandbox_adapters(),
                "PAYMENT_PROVIDER": self.payment_provider == "sandbox"}


def test_production_refuses_a_sandbox_adapter_and_names_the_setting():
    with pytest.raises(ValidationError) as refused:
        AdapterSettings(**PRODUCTION)
    message = str(refused.value)
    assert "PAYMENT_PROVIDER=sandbox" in message and "ALLOW_SANDBOX_IN_PRODUCTION" in message


def test_the_explicit_staging_flag_allows_it_with_a_start_warning():
    allowed = AdapterSettings(**PRODUCTION, ALLOW_SANDBOX_IN_PRODUCTION="true")
    assert allowed.sandbox_in_use() == ["PAYMENT_PROVIDER"]
    [warning] = allowed.startup_warnings()
    assert "PAYMENT_PROVIDER=sandbox" in warning


def test_real_adapters_or_development_need_no_flag_and_warn_of_nothing():
    assert AdapterSettings(**PRODUCTION, PAYMENT_PROVIDER="btcpay").startup_warnings() == []
    assert AdapterSettings(APP_ENV="development").startup_warnings() == []


def test_a_refused_configuration_exits_with_its_reasons_not_a_traceback(monkeypatch):
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("INTERNAL_SIGNING_KEY", "k" * 32)
    defn = ServiceDefinition(name="adapters", settings_factory=AdapterSettings,
                             migrations=Path("."), create_api=lambda s: None)
    with pytest.raises(SystemExit) as exited:
        load_settings(defn)
    message = str(exited.value.code)
    assert message.startswith("adapters: refusing to start: ")
    assert "PAYMENT_PROVIDER=sandbox" in message and "DB_PASSWORD" in message
    assert exited.value.__cause__ is None and exited.value.__suppress_context__


def test_trusted_proxies_are_cidrs_and_a_typo_is_refused():
    settings = ServiceSettings(TRUSTED_PROXIES="10.0.0.0/8, 192.168.1.7")
    assert settings.trusted_proxies == ["10.0.0.0/8", "192.168.1.7/32"]
    assert ServiceSettings().trusted_proxies == []
    with pytest.raises(ValidationError, match="TRUSTED_PROXIES"):
        ServiceSettings(TRUSTED_PROXIES="10.0.0.0/8,ingress")


def test_internal_api_docs_only_in_development():
    assert internal_api_docs(ServiceSettings(APP_ENV="development"))["openapi_url"]
    assert set(internal_api_docs(ServiceSettings(APP_ENV="staging")).values()) == {None}


async def _client_hosts_seen(settings: ServiceSettings, forwarded: list[str]) -> list[str]:
    """Run uvicorn with the `api` command's options; what `request.client` says per request."""

    async def echo(request: Request):
        return PlainTextResponse(request.client.host if request.client else "")

    app = Starlette(routes=[Route("/", echo)])
    async with (serving(app, **{**uvicorn_options(settings), "loop": "asyncio"}) as url,
                httpx.AsyncClient(base_url=url) as client):
        return [(await client.get("/", headers={"X-Forwarded-For": xff})).text
                for xff in forwarded]


async def test_without_trusted_proxies_a_spoofed_forwarded_for_from_loopback_is_ignored():
    seen = await _client_hosts_seen(ServiceSettings(), ["203.0.113.1", "198.51.100.2"])
    assert seen == ["127.0.0.1", "127.0.0.1"]


async def test_a_trusted_proxy_s_forwarded_for_is_believed():
    seen = await _client_hosts_seen(ServiceSettings(TRUSTED_PROXIES="127.0.0.0/8"),
                                    ["203.0.113.1", "198.51.100.2, 127.0.0.5"])
    assert seen == ["203.0.113.1", "198.51.100.2"]


def test_production_refuses_a_manifest_placeholder_and_names_the_setting():
    with pytest.raises(ValidationError, match="CHANGE-ME placeholders.*APP_BASE_URL"):
        AdapterSettings(**PRODUCTION, PAYMENT_PROVIDER="btcpay",
                        APP_BASE_URL="https://CHANGE-ME.example")
    assert AdapterSettings(APP_BASE_URL="https://CHANGE-ME.example").placeholder_settings()
