"""Settings of the telegram service."""

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from runtime.settings import DEV_WEBHOOK_SECRET, service_settings

# The Telegram emulator's token: the only "sandbox" this service has (TELEGRAM_API_BASE is just
# a URL, and a self-hosted Bot API server is as legitimate as the emulator).
DEV_BOT_TOKEN = "123456:TEST-TOKEN"


class Settings(service_settings("telegram", port=8104)):
    bot_token: str = Field(DEV_BOT_TOKEN, alias="TELEGRAM_BOT_TOKEN")
    api_base: str = Field("http://127.0.0.1:8081", alias="TELEGRAM_API_BASE")
    webhook_secret: str = Field(DEV_WEBHOOK_SECRET, alias="TELEGRAM_WEBHOOK_SECRET")
    support_chat_id: int = Field(-1001000000001, alias="TELEGRAM_SUPPORT_CHAT_ID")
    # Several support groups (telegram.support_groups); empty: the one TELEGRAM_SUPPORT_CHAT_ID.
    support_chat_ids: Annotated[list[int], NoDecode] = Field(default_factory=list,
                                                             alias="TELEGRAM_SUPPORT_CHAT_IDS")
    # Seconds between two new messages in one support group (Telegram: about 20 a minute), and
    # the first group's pending rows past which a new ticket goes to the least busy group.
    support_send_interval: float = Field(3.0, alias="TELEGRAM_SUPPORT_SEND_INTERVAL", ge=0,
                                         le=60)
    support_spread_backlog: int = Field(20, alias="TELEGRAM_SUPPORT_SPREAD_BACKLOG", ge=0)
    operator_ids: Annotated[list[int], NoDecode] = Field(default_factory=lambda: [1001],
                                                         alias="TELEGRAM_OPERATOR_IDS")
    bot_username: str = Field("vpn_support_bot", alias="TELEGRAM_BOT_USERNAME")
    notify_concurrency: int = Field(20, alias="TELEGRAM_NOTIFY_CONCURRENCY")
    max_retry_after_wait: int = Field(30, alias="TELEGRAM_MAX_INLINE_RETRY_AFTER")
    # Billing's internal API: a Stars pre-checkout query is answered from its word, and Telegram
    # waits 10 s for the answer, so billing gets at most this long (then the answer is "try
    # again").
    billing_url: str = Field("http://127.0.0.1:8101", alias="BILLING_URL")
    pre_checkout_billing_timeout: float = Field(4.0, alias="TELEGRAM_PRE_CHECKOUT_BILLING_TIMEOUT",
                                                gt=0, le=8)
    # The shop bot calls billing and the provisioner for the customer (as the gateway does).
    provisioner_url: str = Field("http://127.0.0.1:8102", alias="PROVISIONER_URL")
    # The tickets service: the customer card's open tickets and the bot's CSAT buttons.
    tickets_url: str = Field("http://127.0.0.1:8103", alias="TICKETS_URL")
    # The customer card's edits wait this long after an event, so a burst makes one edit.
    card_debounce_seconds: float = Field(2.0, alias="TELEGRAM_CARD_DEBOUNCE_SECONDS", ge=0,
                                         le=60)
    shop_api_timeout: float = Field(5.0, alias="TELEGRAM_SHOP_API_TIMEOUT", gt=0, le=30)
    # Broadcasts (telegram.broadcasts): their fixed share of Telegram's 30 messages/s overall,
    # shared by every broadcast and worker; the product's own notices keep the rest.
    broadcast_rate: float = Field(20.0, alias="TELEGRAM_BROADCAST_RATE", gt=0, le=30)
    # The product's own messages to customers (telegram.pacing): seconds between two new
    # messages in one chat, and messages a second overall (the rest of the 30 a second).
    chat_send_interval: float = Field(1.0, alias="TELEGRAM_CHAT_SEND_INTERVAL", ge=0, le=60)
    send_rate: float = Field(10.0, alias="TELEGRAM_SEND_RATE", gt=0, le=30)
    broadcast_lanes: int = Field(3, alias="TELEGRAM_BROADCAST_CONCURRENCY", ge=1, le=10)
    broadcast_lease: float = Field(30.0, alias="TELEGRAM_BROADCAST_LEASE", ge=15, le=600)
    broadcast_run_seconds: float = Field(60.0, alias="TELEGRAM_BROADCAST_RUN_SECONDS", gt=0)
    broadcast_plan_batch: int = Field(5000, alias="TELEGRAM_BROADCAST_PLAN_BATCH", ge=1,
                                      le=50000)

    @field_validator("operator_ids", "support_chat_ids", mode="before")
    @classmethod
    def _split_ids(cls, v):
        if isinstance(v, str):
            return [int(x) for x in v.replace(" ", "").split(",") if x]
        if isinstance(v, int):
            return [v]
        return v

    @property
    def support_chats(self) -> list[int]:
        """Every support group, the first taking new tickets while it keeps up."""
        return list(dict.fromkeys(self.support_chat_ids)) or [self.support_chat_id]

    def secret_defaults(self) -> dict[str, bool]:
        return {**super().secret_defaults(),
                "TELEGRAM_WEBHOOK_SECRET": self.webhook_secret == DEV_WEBHOOK_SECRET,
                "TELEGRAM_BOT_TOKEN": self.bot_token == DEV_BOT_TOKEN}
