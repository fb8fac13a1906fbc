"""Settings common to every service, read from the environment (see `.env.example`)."""

from __future__ import annotations

import ipaddress
from typing import Annotated, ClassVar
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEV_SIGNING_KEY = "dev-internal-signing-key-change-me"
DEV_WEBHOOK_SECRET = "dev-telegram-webhook-secret"
# What the shipped manifests put where an operator must give a real value.
PLACEHOLDER = "CHANGE-ME"


class ServiceSettings(BaseSettings):
    """Base settings; each service's come from `service_settings`, which names the service and
    gives its port and database role their settings."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    service_name: ClassVar[str] = "service"
    schema_name: ClassVar[str | None] = None  # the service's schema when not `service_name`
    app_env: str = Field("development", alias="APP_ENV")
    app_base_url: str = Field("http://127.0.0.1:8000", alias="APP_BASE_URL")
    database_url: str = Field("postgresql://postgres@127.0.0.1:5432/vpn", alias="DATABASE_URL")
    rabbitmq_url: str = Field("amqp://guest:guest@127.0.0.1:5672/", alias="RABBITMQ_URL")
    redis_url: str = Field("redis://127.0.0.1:6379/0", alias="REDIS_URL")
    internal_signing_key: str = Field(DEV_SIGNING_KEY, alias="INTERNAL_SIGNING_KEY")
    log_level: str = Field("INFO", alias="LOG_LEVEL")
    host: str = Field("127.0.0.1", alias="BIND_HOST")
    broker_prefix: str = Field("", alias="BROKER_PREFIX")
    jobs_prefix: str = Field("bull", alias="JOBS_PREFIX")
    delivery_limit: int = Field(5, alias="BROKER_DELIVERY_LIMIT")
    outbox_poll_seconds: float = Field(1.0, alias="OUTBOX_POLL_SECONDS")
    max_body_bytes: int = Field(64 * 1024, alias="MAX_BODY_BYTES")
    shutdown_grace_seconds: float = Field(20.0, alias="SHUTDOWN_GRACE_SECONDS")
    worker_metrics_port: int = Field(0, alias="WORKER_METRICS_PORT")
    retention_interval_ms: int = Field(24 * 3600 * 1000, alias="RETENTION_INTERVAL_MS")
    outbox_retention_days: float = Field(7, alias="OUTBOX_RETENTION_DAYS")
    inbox_retention_days: float = Field(7, alias="INBOX_RETENTION_DAYS")
    # The KPIs' cached days (runtime.daystats): how often the worker fills the missing ones,
    # how far back it keeps them filled, and how often it renews the snapshot of the days not
    # closed yet (well under `daystats.LIVE_MAX_AGE`, so reads find it fresh).
    stats_days_interval_ms: int = Field(15 * 60 * 1000, alias="STATS_DAYS_INTERVAL_MS")
    stats_days_warm_days: int = Field(400, alias="STATS_DAYS_WARM_DAYS")
    stats_live_interval_ms: int = Field(30 * 1000, alias="STATS_LIVE_INTERVAL_MS", gt=0,
                                        le=60 * 1000)
    # Peers (CIDRs) whose X-Forwarded-For / X-Forwarded-Proto are believed; empty: nobody's.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list,
                                                            alias="TRUSTED_PROXIES")
    # A staging cluster may run production settings with the sandbox adapters, explicitly.
    allow_sandbox_in_production: bool = Field(False, alias="ALLOW_SANDBOX_IN_PRODUCTION")

    # Per-service values, read from `<SERVICE>_PORT` and so on (see `service_settings`).
    port: int = 8000
    db_role: str = "service"
    db_password: str = "service-dev-password"

    @property
    def schema(self) -> str:
        return self.schema_name or self.service_name

    @property
    def is_production(self) -> bool:
        return self.app_env == "production"

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _parse_trusted_proxies(cls, v):
        if isinstance(v, str):
            v = [p for p in v.replace(" ", "").split(",") if p]
        out = []
        for cidr in v:
            try:
                out.append(str(ipaddress.ip_network(cidr, strict=False)))
            except ValueError as exc:
                raise ValueError(f"TRUSTED_PROXIES: {cidr!r} is not an IP address or CIDR") from exc
        return out

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> ServiceSettings:
        if not self.is_production:
            return self
        problems = []
        weak = [name for name, value in self.secret_defaults().items() if value]
        if weak:
            problems.append(f"production refuses default secrets: {', '.join(weak)}")
        placeholders = self.placeholder_settings()
        if placeholders:
            problems.append(f"production refuses {PLACEHOLDER} placeholders, give real values: "
                            f"{', '.join(placeholders)}")
        if self.sandbox_in_use() and not self.allow_sandbox_in_production:
            problems.append(
                f"production refuses the sandbox adapters ({self._sandbox_list()}): anyone could "
                "pay or get a VPN for free. Configure a real adapter, or set "
                "ALLOW_SANDBOX_IN_PRODUCTION=true for a staging cluster")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def placeholder_settings(self) -> list[str]:
        """Settings still holding a manifest's placeholder value."""
        return [field.alias or name for name, field in type(self).model_fields.items()
                if isinstance(getattr(self, name), str) and PLACEHOLDER in getattr(self, name)]

    def sandbox_adapters(self) -> dict[str, bool]:
        """Which adapter settings name a sandbox (overridden by subclasses that have adapters)."""
        return {}

    def sandbox_in_use(self) -> list[str]:
        """The names of the settings that select a sandbox adapter."""
        return [name for name, on in self.sandbox_adapters().items() if on]

    def _sandbox_list(self) -> str:
        return ", ".join(f"{name}=sandbox" for name in self.sandbox_in_use())

    def startup_warnings(self) -> list[str]:
        """What a process logs as a warning at every start (a sandbox allowed in production)."""
        if self.is_production and self.sandbox_in_use():
            return [f"sandbox adapters in production ({self._sandbox_list()}), "
                    "allowed by ALLOW_SANDBOX_IN_PRODUCTION=true: payments and VPN keys are "
                    "not real"]
        return []

    def secret_defaults(self) -> dict[str, bool]:
        """Which secrets still hold their development default (overridden by subclasses)."""
        return {
            "INTERNAL_SIGNING_KEY": self.internal_signing_key == DEV_SIGNING_KEY,
            "DB_PASSWORD": self.db_password.endswith("-dev-password"),
        }

    def service_dsn(self) -> str:
        """DATABASE_URL with this service's own role and password, for asyncpg."""
        return _with_credentials(self.database_url, self.db_role, self.db_password)

    def admin_dsn(self) -> str:
        """DATABASE_URL as given: an owner of the database, used only by `bootstrap`."""
        return _asyncpg_url(self.database_url)


def service_settings(name: str, *, port: int, schema: str | None = None) -> type[ServiceSettings]:
    """The settings base of the service `name` (its schema is `name` unless `schema` says
    otherwise), with the settings every service has under its own name, as the manifests give
    them: `<NAME>_PORT` (default `port`), `<NAME>_DB_ROLE` (`<name>_svc`) and
    `<NAME>_DB_PASSWORD` (`<name>-dev-password`, which production refuses)."""
    env, default_port = name.upper(), port

    class NamedServiceSettings(ServiceSettings):
        service_name: ClassVar[str] = name
        schema_name: ClassVar[str | None] = schema
        port: int = Field(default_port, alias=f"{env}_PORT")
        db_role: str = Field(f"{name}_svc", alias=f"{env}_DB_ROLE")
        db_password: str = Field(f"{name}-dev-password", alias=f"{env}_DB_PASSWORD")

    return NamedServiceSettings


def _asyncpg_url(url: str) -> str:
    parts = urlsplit(url)
    scheme = "postgresql+asyncpg"
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, parts.fragment))


def _with_credentials(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{quote(user)}:{quote(password)}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return _asyncpg_url(urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")))


def provider_names(single: str, listed: str | list[str]) -> list[str]:
    """The enabled payment providers: `PAYMENT_PROVIDERS` (comma separated, in order) or, when
    it is not set, the one `PAYMENT_PROVIDER` names. Read alike by billing and the gateway."""
    names = listed.split(",") if isinstance(listed, str) else listed
    names = [n.strip() for n in names if n and n.strip()]
    return names or [single]
