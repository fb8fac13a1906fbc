"""Admin user search: a prefix of the email or of the Telegram username (case-insensitive, `@`
before a username ignored) or the exact id, each one range of its index, in id order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from gateway.models import User
from gateway.repository import UserRepository


async def add(db, email: str, username: str | None = None) -> str:
    uid = uuid.uuid4().hex
    async with db.transaction() as s:
        s.add(User(id=uid, email=email, password_hash="x", role="USER", is_blocked=False,
                   created_at=datetime.now(UTC), telegram_linked=username is not None,
                   telegram_username=username))
    return uid


async def search(db, q: str, limit: int = 20, cursor: str | None = None) -> list[str]:
    async with db.transaction() as s:
        return [u.id for u in await UserRepository(s).search(q, limit, cursor)]


async def test_prefix_of_email_or_username_or_exact_id(db):
    tag = uuid.uuid4().hex[:8]
    anna = await add(db, f"Anna.{tag}@Example.com", f"anna_{tag}")
    annabel = await add(db, f"annabel.{tag}@example.com")
    boris = await add(db, f"boris.{tag}@example.com", f"Boris_{tag}")
    assert await search(db, f"ANNA.{tag}") == [anna]  # case-insensitive prefix
    assert set(await search(db, "anna")) >= {anna, annabel}
    assert await search(db, f"@boris_{tag}") == [boris]  # the username, `@` or not
    assert await search(db, f"boris_{tag}") == [boris]
    assert await search(db, boris) == [boris]  # the id, exactly
    assert await search(db, boris[:-1]) == []  # an id only whole
    assert await search(db, f"{tag}@example.com") == []  # a substring is not a prefix
    assert await search(db, f"anna_{tag}"[:5] + "%") == []  # LIKE wildcards are literal


async def test_pages_through_matches_in_id_order(db):
    tag = uuid.uuid4().hex[:8]
    ids = sorted([await add(db, f"page.{tag}.{i}@example.com") for i in range(5)])
    first = await search(db, f"page.{tag}", limit=2)
    assert first == ids[:3]  # one more than the page: there is a next one
    assert await search(db, f"page.{tag}", limit=2, cursor=ids[1]) == ids[2:5]
