"""The broadcasts' public shapes (`/admin/broadcasts`): an admin's message, in English and
Russian with optional URL buttons, to a segment of the linked customers in the bot."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from contracts.public.common import Strict, Text, Whole
from contracts.text import has_visible

__all__ = ["BroadcastCreate", "BroadcastEnvelope", "BroadcastList", "BroadcastOut",
           "BroadcastStatus", "PreviewBody", "PreviewOut", "SEGMENTS", "Segment", "UrlButton"]

SEGMENTS = ("all_linked", "active", "expiring_7d", "expired_30d", "trial_only", "never_paid")
Segment = Literal["all_linked", "active", "expiring_7d", "expired_30d", "trial_only",
                  "never_paid"]
BroadcastStatus = Literal["DRAFT", "SENDING", "PAUSED", "DONE", "CANCELED"]

MAX_TEXT = 4096  # Telegram's, in UTF-16 code units (the text is sent as plain text)


def _visible(value: str) -> str:
    if not has_visible(value):
        raise ValueError("must have visible text")
    return value


def _message(value: str) -> str:
    _visible(value)
    if len(value.encode("utf-16-le")) // 2 > MAX_TEXT:
        raise ValueError(f"must be at most {MAX_TEXT} characters (UTF-16 code units)")
    return value


URL_PATTERN = r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?([/?#][!-~]*)?$"


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(
            ch.isspace() for ch in value):
        raise ValueError("must be an http:// or https:// URL with a host")
    return value


Message = Annotated[Text, StringConstraints(min_length=1, max_length=MAX_TEXT),
                    AfterValidator(_message)]


class UrlButton(Strict):
    text: Annotated[Text, StringConstraints(min_length=1, max_length=64),
                    AfterValidator(_visible)]
    # The pattern says in the schema what _http_url checks: http(s), a host, printable ASCII
    # (so no control character either: plain `str`, whose schema keeps this pattern).
    url: Annotated[str, StringConstraints(min_length=1, max_length=2048, pattern=URL_PATTERN),
                   AfterValidator(_http_url)]


class BroadcastCreate(Strict):
    text_en: Message
    text_ru: Message
    segment: Segment
    buttons: list[UrlButton] = Field(default_factory=list, max_length=6,
                                     description="One URL button per row, at most 6")


class PreviewBody(Strict):
    # Telegram's user ids have at most 52 significant bits; the bound stays exact in JSON
    telegram_user_id: Whole = Field(ge=1, le=2**53 - 1)


class BroadcastOut(BaseModel):
    id: str
    status: BroadcastStatus
    segment: Segment
    text_en: str
    text_ru: str
    buttons: list[UrlButton]
    total: int = Field(description="Recipients planned (grows while the plan is made)")
    sent: int
    failed: int
    blocked_by_user: int = Field(description="Recipients who had blocked the bot: skipped by "
                                             "later broadcasts until they write again")
    resent: int = Field(description="Recipients whose send was in flight when a worker "
                                    "stopped: sent again, so they may have it twice")
    planned: bool = Field(description="Every recipient of the segment is in the plan")
    held_until: datetime | None = Field(description="Telegram asked to wait (429 "
                                                    "retry_after): nothing is sent until then")
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class BroadcastEnvelope(BaseModel):
    broadcast: BroadcastOut


class BroadcastList(BaseModel):
    broadcasts: list[BroadcastOut]


class PreviewOut(BaseModel):
    sent: bool
    telegram_user_id: int
    language: Literal["en", "ru"]
