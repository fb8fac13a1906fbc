"""Settings of the gateway."""

from pydantic import Field

from runtime.settings import provider_names, service_settings

# The Telegram emulator's token (the telegram service's default too).
DEV_BOT_TOKEN = "123456:TEST-TOKEN"


class Settings(service_settings("gateway", port=8000, schema="identity")):
    session_cookie_name: str = Field("sid", alias="SESSION_COOKIE_NAME")
    session_ttl_days: int = Field(30, alias="SESSION_TTL_DAYS")
    admin_bootstrap_email: str | None = Field(None, alias="ADMIN_BOOTSTRAP_EMAIL")
    tickets_url: str = Field("http://127.0.0.1:8103", alias="TICKETS_URL")
    telegram_url: str = Field("http://127.0.0.1:8104", alias="TELEGRAM_URL")
    billing_url: str = Field("http://127.0.0.1:8101", alias="BILLING_URL")
    provisioner_url: str = Field("http://127.0.0.1:8102", alias="PROVISIONER_URL")
    upstream_timeout: float = Field(10.0, alias="UPSTREAM_TIMEOUT_SECONDS")
    rate_limits_enabled: bool = Field(True, alias="RATE_LIMITS_ENABLED")
    login_per_email_per_minute: int = Field(5, alias="LOGIN_PER_EMAIL_PER_MINUTE")
    login_per_ip_per_minute: int = Field(30, alias="LOGIN_PER_IP_PER_MINUTE")
    register_per_ip_per_hour: int = Field(20, alias="REGISTER_PER_IP_PER_HOUR")
    tickets_per_user_per_hour: int = Field(20, alias="TICKETS_PER_USER_PER_HOUR")
    ticket_replies_per_user_per_hour: int = Field(120, alias="TICKET_REPLIES_PER_USER_PER_HOUR")
    ticket_replies_per_ticket_per_hour: int = Field(
        60, alias="TICKET_REPLIES_PER_TICKET_PER_HOUR")
    ticket_uploads_per_user_per_hour: int = Field(30, alias="TICKET_UPLOADS_PER_USER_PER_HOUR")
    invoices_per_user_per_hour: int = Field(30, alias="INVOICES_PER_USER_PER_HOUR")
    telegram_links_per_user_per_hour: int = Field(10, alias="TELEGRAM_LINKS_PER_USER_PER_HOUR")
    # `GET /sub/{token}`: a customer's apps refresh it every few hours, from a few devices.
    sub_link_per_token_per_minute: int = Field(30, alias="SUB_LINK_PER_TOKEN_PER_MINUTE")
    sub_link_per_ip_per_minute: int = Field(120, alias="SUB_LINK_PER_IP_PER_MINUTE")
    # The profile name the apps' import links carry (the provisioner reads it too).
    sub_profile_title: str = Field("VPN", alias="SUB_PROFILE_TITLE", min_length=1,
                                   max_length=64, pattern=r"^[A-Za-z0-9 ._-]+$")
    # Telegram sign-in (Login Widget, Mini App): their hashes are checked with the bot token.
    telegram_bot_token: str = Field(DEV_BOT_TOKEN, alias="TELEGRAM_BOT_TOKEN")
    telegram_bot_username: str = Field("vpn_support_bot", alias="TELEGRAM_BOT_USERNAME")
    telegram_oauth_url: str = Field("https://oauth.telegram.org/auth", alias="TELEGRAM_OAUTH_URL")
    telegram_login_max_age: int = Field(86400, alias="TELEGRAM_LOGIN_MAX_AGE_SECONDS", gt=0)
    telegram_sign_ins_per_ip_per_minute: int = Field(30,
                                                     alias="TELEGRAM_SIGN_INS_PER_IP_PER_MINUTE")
    password_resets_per_email_per_hour: int = Field(3, alias="PASSWORD_RESETS_PER_EMAIL_PER_HOUR")
    password_resets_per_ip_per_hour: int = Field(20, alias="PASSWORD_RESETS_PER_IP_PER_HOUR")
    # Read by the web pages too (web/config.py): a sandbox chain there lets anyone pay for free.
    payment_provider: str = Field("sandbox", alias="PAYMENT_PROVIDER")
    payment_providers: str = Field("", alias="PAYMENT_PROVIDERS")

    def secret_defaults(self) -> dict[str, bool]:
        return {**super().secret_defaults(),
                "TELEGRAM_BOT_TOKEN": self.telegram_bot_token in (DEV_BOT_TOKEN, "")}

    @property
    def telegram_bot_id(self) -> str:
        """The bot's numeric id: the part of its token before the colon."""
        return self.telegram_bot_token.split(":", 1)[0]

    def sandbox_adapters(self) -> dict[str, bool]:
        name = "PAYMENT_PROVIDERS" if self.payment_providers.strip() else "PAYMENT_PROVIDER"
        return {**super().sandbox_adapters(), name: "sandbox" in provider_names(
            self.payment_provider, self.payment_providers)}

    @property
    def cookie_secure(self) -> bool:
        return self.app_base_url.startswith("https://")

    def _cookie(self, name: str) -> str:
        # Over https a `__Host-` name: browsers then take the cookie only if Secure, Path=/ and
        # without Domain, so a sibling subdomain or plain-http page cannot plant or shadow it.
        if self.cookie_secure and not name.startswith("__Host-"):
            return "__Host-" + name
        return name

    @property
    def session_cookie(self) -> str:
        """The session cookie's effective name (every reader and writer uses this one)."""
        return self._cookie(self.session_cookie_name)

    @property
    def anon_cookie(self) -> str:
        """The web pages' anonymous cookie (binds CSRF tokens before sign-in)."""
        return self._cookie("web_anon")

    @property
    def referral_cookie(self) -> str:
        """The referral code a visitor came with (`/r/<code>`), kept until they sign up."""
        return self._cookie("ref")
