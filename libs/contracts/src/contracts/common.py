"""Field types shared by contracts."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import PlainSerializer

Money = Annotated[Decimal, PlainSerializer(lambda v: format(v, "f"), return_type=str)]
Role = Literal["USER", "SUPPORT", "ADMIN"]
TicketStatus = Literal["OPEN", "PENDING_USER", "PENDING_SUPPORT", "CLOSED"]
TicketSource = Literal["WEB", "TELEGRAM"]
MessageOrigin = Literal["WEB", "TELEGRAM", "ADMIN"]
AuthorRole = Literal["USER", "SUPPORT"]
