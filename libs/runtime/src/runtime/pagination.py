"""Keyset pagination shared by every list endpoint: newest first by (created_at, id).

The cursor is opaque to clients: base64 of the last row's timestamp and id. A cursor that does
not decode, or names a time or id no row can have, is a 400 `VALIDATION_ERROR`, never a 500.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from runtime.errors import ValidationFailed


def encode_cursor(ts: datetime, ident: str) -> str:
    return base64.urlsafe_b64encode(f"{ts.isoformat()}|{ident}".encode()).decode().rstrip("=")


# Cursors only ever name rows this system wrote; anything outside this is tampered.
_MIN_TS = datetime(2000, 1, 1, tzinfo=UTC)
_MAX_TS = datetime(9000, 1, 1, tzinfo=UTC)
_MAX_ID_LEN = 128
INT64_MAX = 2**63 - 1


def _invalid(cursor: str) -> ValidationFailed:
    return ValidationFailed("Invalid cursor", {"cursor": cursor[:200]})


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) a cursor names; 400 for anything `encode_cursor` cannot produce."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ts, ident = raw.split("|", 1)
        parsed = datetime.fromisoformat(ts)
    except Exception as exc:
        raise _invalid(cursor) from exc
    if parsed.tzinfo is None or not ident or len(ident) > _MAX_ID_LEN:
        raise _invalid(cursor)
    if not ident.isprintable() or not _MIN_TS <= parsed <= _MAX_TS:
        raise _invalid(cursor)
    return parsed, ident


def decode_id_cursor(cursor: str | None) -> str | None:
    """A cursor that is the last row's id (32 lower-case hex digits): None when absent, 400
    for anything else."""
    if not cursor:
        return None
    if len(cursor) != 32 or not all(c in "0123456789abcdef" for c in cursor):
        raise _invalid(cursor)
    return cursor


def decode_int_cursor(cursor: str | None) -> int | None:
    """A numeric cursor (a bigint id): None when absent, 400 unless ASCII digits within int64."""
    if not cursor:
        return None
    if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > 19 or int(cursor) > INT64_MAX:
        raise _invalid(cursor)
    return int(cursor)


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
