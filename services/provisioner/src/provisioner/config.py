"""Settings of the provisioner: VPN backend choice and credentials, job retries, schedules."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from runtime.settings import service_settings

DEV_KEY_SECRET = "dev-vpn-key-secret-change-me"
DEV_SERVER_CREDENTIALS_KEY = "dev-server-credentials-key-change-me"


class Settings(service_settings("provisioner", port=8102, schema="provisioning")):
    # VPN backend (sandbox | outline | marzban | remnawave | xui) and what every driver shares
    vpn_backend: Literal["sandbox", "outline", "marzban", "remnawave", "xui"] = Field(
        "sandbox", alias="VPN_BACKEND")
    vpn_timeout_seconds: float = Field(10.0, alias="VPN_BACKEND_TIMEOUT_SECONDS", gt=0)
    vpn_data_limit_bytes: int = Field(0, alias="VPN_DATA_LIMIT_BYTES", ge=0)  # 0 = unlimited
    # Derives stable per-account secrets (Outline key passwords) so a re-created key keeps its URL.
    vpn_key_secret: str = Field(DEV_KEY_SECRET, alias="VPN_KEY_SECRET")
    sandbox_vpn_host: str = Field("vpn.sandbox.invalid", alias="SANDBOX_VPN_HOST")
    sandbox_vpn_port: int = Field(8388, alias="SANDBOX_VPN_PORT")
    outline_api_url: str | None = Field(None, alias="OUTLINE_API_URL")
    outline_cert_sha256: str | None = Field(None, alias="OUTLINE_CERT_SHA256")
    marzban_base_url: str | None = Field(None, alias="MARZBAN_BASE_URL")
    marzban_username: str | None = Field(None, alias="MARZBAN_USERNAME")
    marzban_password: str | None = Field(None, alias="MARZBAN_PASSWORD")
    marzban_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["vless"], alias="MARZBAN_PROXIES")
    remnawave_base_url: str | None = Field(None, alias="REMNAWAVE_BASE_URL")
    remnawave_api_token: str | None = Field(None, alias="REMNAWAVE_API_TOKEN")
    # internal squad uuids (comma separated) every account is given: they grant the nodes
    remnawave_squads: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="REMNAWAVE_SQUADS")
    remnawave_webhook_secret: str | None = Field(None, alias="REMNAWAVE_WEBHOOK_SECRET")
    # 3x-ui: the panel URL with its web base path, the admin login, the inbounds (ids, comma
    # separated) every client is put on, and the public prefix of subscription links
    xui_base_url: str | None = Field(None, alias="XUI_BASE_URL")
    xui_username: str | None = Field(None, alias="XUI_USERNAME")
    xui_password: str | None = Field(None, alias="XUI_PASSWORD")
    xui_inbound_ids: Annotated[list[int], NoDecode] = Field(
        default_factory=list, alias="XUI_INBOUND_IDS")
    xui_sub_base_url: str | None = Field(None, alias="XUI_SUB_BASE_URL")

    # The server pool: servers' credentials are encrypted at rest with a Fernet key derived
    # from this secret (production stores none under the default key; a single seeded server
    # needs no key at all); the server `VPN_BACKEND` describes is seeded (once) with this
    # name, location and capacity; a new subscription is placed in `SERVER_DEFAULT_LOCATION`
    # (empty: any location).
    server_credentials_key: str = Field(DEV_SERVER_CREDENTIALS_KEY,
                                        alias="SERVER_CREDENTIALS_KEY", min_length=16)
    seed_server_name: str = Field("default", alias="SEED_SERVER_NAME", min_length=1)
    seed_server_location: str = Field("default", alias="SEED_SERVER_LOCATION",
                                      pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")
    seed_server_capacity: int = Field(100_000, alias="SEED_SERVER_CAPACITY", ge=0)
    server_default_location: str = Field("", alias="SERVER_DEFAULT_LOCATION")
    # The health check of every server (it lists the panel's accounts), and how long it waits.
    server_health_seconds: int = Field(120, alias="SERVER_HEALTH_SECONDS", ge=1)
    server_health_timeout_seconds: float = Field(15.0, alias="SERVER_HEALTH_TIMEOUT_SECONDS",
                                                 gt=0)

    # The stable subscription link (`GET /sub/{token}`, `provisioner.links`): how long the
    # content fetched from a server is kept (0: never), the update interval told to clients
    # when the panel tells none, the profile name clients show, and locations' display names
    # (`code=Name`, comma separated; default: the code).
    sub_link_cache_seconds: int = Field(30, alias="SUB_LINK_CACHE_SECONDS", ge=0, le=3600)
    sub_update_interval_hours: int = Field(12, alias="SUB_UPDATE_INTERVAL_HOURS", ge=1, le=168)
    sub_profile_title: str = Field("VPN", alias="SUB_PROFILE_TITLE", min_length=1,
                                   max_length=64, pattern=r"^[A-Za-z0-9 ._-]+$")
    location_names: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, alias="LOCATION_NAMES")

    # the `provision` job queue
    provision_attempts: int = Field(8, alias="PROVISION_ATTEMPTS", ge=1)
    provision_backoff_ms: int = Field(2000, alias="PROVISION_BACKOFF_MS", ge=1)
    provision_concurrency: int = Field(10, alias="PROVISION_CONCURRENCY", ge=1)
    # Paid invoices are applied inline by the consumer (at most this many at once); after a
    # backend failure there, the next ones go straight to the `provision` queue for this long.
    provision_inline: bool = Field(True, alias="PROVISION_INLINE")
    provision_inline_cooldown_seconds: float = Field(
        30.0, alias="PROVISION_INLINE_COOLDOWN_SECONDS", ge=0)
    provision_inline_concurrency: int = Field(5, alias="PROVISION_INLINE_CONCURRENCY", ge=1)

    # scheduled jobs (seconds between runs)
    provision_sweep_seconds: int = Field(60, alias="PROVISION_SWEEP_SECONDS", ge=1)
    provision_sweep_grace_seconds: int = Field(120, alias="PROVISION_SWEEP_GRACE_SECONDS", ge=0)
    expiry_sweep_seconds: int = Field(60, alias="EXPIRY_SWEEP_SECONDS", ge=1)
    expiry_reminder_seconds: int = Field(900, alias="EXPIRY_REMINDER_SECONDS", ge=1)
    reconcile_seconds: int = Field(3600, alias="RECONCILE_SECONDS", ge=1)
    # The limit check: how often running subscriptions' usage is read (to see a used-up
    # allowance, and its monthly reset), and how many a run reads.
    limit_check_seconds: int = Field(300, alias="LIMIT_CHECK_SECONDS", ge=1)
    limit_check_batch: int = Field(100, alias="LIMIT_CHECK_BATCH", ge=1)
    reminder_days: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: [7, 3, 1], alias="EXPIRY_REMINDER_DAYS")
    # Auto-renewal: billing is asked to charge the renewal this long before `expires_at`.
    auto_renew_hours_before: int = Field(24, alias="AUTO_RENEW_HOURS_BEFORE", ge=1, le=24 * 30)
    renewal_sweep_seconds: int = Field(60, alias="RENEWAL_SWEEP_SECONDS", ge=1)
    sweep_batch: int = Field(200, alias="PROVISIONER_SWEEP_BATCH", ge=1)
    # A sweep run works batch after batch for at most this long (the queue's job lock is 30 s).
    sweep_budget_seconds: float = Field(20, alias="SWEEP_BUDGET_SECONDS", gt=0, le=25)
    # The expiry sweep expires this many subscriptions per transaction (it holds two advisory
    # locks for each, a user's and an account's, in Postgres' shared lock table until commit),
    # and calls a panel without a bulk call this many times at once.
    expiry_batch: int = Field(1000, alias="EXPIRY_BATCH", ge=1, le=2000)
    expiry_concurrency: int = Field(4, alias="EXPIRY_CONCURRENCY", ge=1, le=32)

    @field_validator("marzban_proxies", "remnawave_squads", mode="before")
    @classmethod
    def _split_proxies(cls, v):
        if isinstance(v, str):
            return [p for p in v.replace(" ", "").split(",") if p]
        return v

    @field_validator("location_names", mode="before")
    @classmethod
    def _split_location_names(cls, v):
        if isinstance(v, str):
            pairs = [p.split("=", 1) for p in v.split(",") if "=" in p]
            return {k.strip(): name.strip() for k, name in pairs if k.strip() and name.strip()}
        return v

    @field_validator("xui_inbound_ids", mode="before")
    @classmethod
    def _split_inbound_ids(cls, v):
        if isinstance(v, str):
            return [int(i) for i in v.replace(" ", "").split(",") if i]
        return v

    @field_validator("reminder_days", mode="before")
    @classmethod
    def _split_days(cls, v):
        if isinstance(v, str):
            v = [int(d) for d in v.replace(" ", "").split(",") if d]
        return sorted({int(d) for d in v if int(d) > 0}, reverse=True)

    @model_validator(mode="after")
    def _backend_configured(self) -> Settings:
        missing = []
        if self.vpn_backend == "outline":
            missing = [n for n, v in (("OUTLINE_API_URL", self.outline_api_url),
                                      ("OUTLINE_CERT_SHA256", self.outline_cert_sha256)) if not v]
        elif self.vpn_backend == "marzban":
            missing = [n for n, v in (("MARZBAN_BASE_URL", self.marzban_base_url),
                                      ("MARZBAN_USERNAME", self.marzban_username),
                                      ("MARZBAN_PASSWORD", self.marzban_password)) if not v]
        elif self.vpn_backend == "remnawave":
            missing = [n for n, v in (("REMNAWAVE_BASE_URL", self.remnawave_base_url),
                                      ("REMNAWAVE_API_TOKEN", self.remnawave_api_token),
                                      ("REMNAWAVE_SQUADS", self.remnawave_squads)) if not v]
        elif self.vpn_backend == "xui":
            missing = [n for n, v in (("XUI_BASE_URL", self.xui_base_url),
                                      ("XUI_USERNAME", self.xui_username),
                                      ("XUI_PASSWORD", self.xui_password),
                                      ("XUI_INBOUND_IDS", self.xui_inbound_ids),
                                      ("XUI_SUB_BASE_URL", self.xui_sub_base_url)) if not v]
        if missing:
            raise ValueError(f"VPN_BACKEND={self.vpn_backend} needs {', '.join(missing)}")
        return self

    @property
    def credentials_key_is_default(self) -> bool:
        return self.server_credentials_key == DEV_SERVER_CREDENTIALS_KEY

    def sandbox_adapters(self) -> dict[str, bool]:
        return {**super().sandbox_adapters(), "VPN_BACKEND": self.vpn_backend == "sandbox"}

    def secret_defaults(self) -> dict[str, bool]:
        out = super().secret_defaults()
        if self.vpn_backend == "outline":
            out["VPN_KEY_SECRET"] = self.vpn_key_secret == DEV_KEY_SECRET
        return out
