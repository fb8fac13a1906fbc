"""Rows the gateway's tests start from, written through the identity store's own models."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from gateway.models import User
from gateway.security import hash_password

PASSWORD = "correct horse 1"


async def add_user(db, role: str = "USER", blocked: bool = False) -> str:
    """A user `<id>@example.com` with PASSWORD; returns the id."""
    uid = uuid.uuid4().hex
    async with db.transaction() as s:
        s.add(User(id=uid, email=f"{uid}@example.com", password_hash=hash_password(PASSWORD),
                   role=role, is_blocked=blocked, created_at=datetime.now(UTC),
                   telegram_linked=False))
    return uid
