"""Keyset pagination shared by every list endpoint: newest first by (created_at, id).

The cursor is opaque to clients: base64 of the last row's timestamp and id. A cursor that does
not decode is a 400 `VALIDATION_ERROR`, never a 500.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from runtime.errors import ValidationFailed


def encode_cursor(ts: datetime, ident: str) -> str:
    return base64.urlsafe_b64encode(f"{ts.isoformat()}|{ident}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ts, ident = raw.split("|", 1)
        parsed = datetime.fromisoformat(ts)
    except Exception as exc:
        raise ValidationFailed("Invalid cursor", {"cursor": cursor}) from exc
    if parsed.tzinfo is None or "\x00" in ident:
        raise ValidationFailed("Invalid cursor", {"cursor": cursor})
    return parsed, ident


async def keyset_page(session: AsyncSession, stmt: sa.Select, model: Any, limit: int,
                      cursor: str | None) -> tuple[list[Any], str | None]:
    """One page of `stmt` (rows of `model`, which has `created_at` and `id`) and the next cursor."""
    if cursor:
        ts, ident = decode_cursor(cursor)
        stmt = stmt.where(sa.tuple_(model.created_at, model.id) < sa.tuple_(ts, ident))
    stmt = stmt.order_by(model.created_at.desc(), model.id.desc()).limit(limit + 1)
    rows = list((await session.execute(stmt)).scalars())
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1].created_at, rows[-1].id)
