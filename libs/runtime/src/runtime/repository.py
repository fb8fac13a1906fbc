"""The generic base of a service's repositories, and the row lookup they share: queries on one
model's rows, run in the session the caller gives (the caller's transaction commits them)."""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

M = TypeVar("M")


async def select_one(session: AsyncSession, stmt: sa.Select, for_update: bool = False):
    """The row `stmt` selects, or None; `for_update` locks it until the transaction ends and
    reloads the object the session may already hold, so the caller sees the row as locked."""
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


class Repository(Generic[M]):
    """Subclasses name their `model` (a mapped class with an `id` primary key) and add queries."""

    model: ClassVar[type[Any]]

    def __init__(self, session: AsyncSession):
        self.session = session

    async def get(self, ident: str, *, for_update: bool = False) -> M | None:
        """The row with this id, or None; `for_update` locks it until the transaction ends."""
        stmt = sa.select(self.model).where(self.model.id == ident)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()
