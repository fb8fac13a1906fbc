"""The telegram service's public shapes: the account-linking link."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class TelegramLinkOut(BaseModel):
    url: str
    expires_at: datetime
