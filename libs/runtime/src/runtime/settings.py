"""Settings common to every service, read from the environment (see `.env.example`)."""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SIGNING_KEY = "dev-internal-signing-key-change-me"
DEV_WEBHOOK_SECRET = "dev-telegram-webhook-secret"


class ServiceSettings(BaseSettings):
    """Base settings; each service subclasses it and sets `service_name`, port and DB role."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    service_name: ClassVar[str] = "service"
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

    # Per-service values; subclasses give them service-specific env aliases.
    port: int = 8000
    db_role: str = "service"
    db_password: str = "service-dev-password"

    @property
    def schema(self) -> str:
        return self.service_schema()

    def service_schema(self) -> str:
        return self.service_name

    @property
    def is_production(self) -> bool:
        return self.app_env == "production"

    @model_validator(mode="after")
    def _refuse_default_secrets_in_production(self) -> ServiceSettings:
        if self.app_env == "production":
            weak = [name for name, value in self.secret_defaults().items() if value]
            if weak:
                raise ValueError(f"production refuses default secrets: {', '.join(weak)}")
        return self

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
