"""Tables of the `provisioning` schema."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase

from runtime.inbox import inbox_table
from runtime.outbox import outbox_table

SCHEMA = "provisioning"


class Base(DeclarativeBase):
    metadata = sa.MetaData(schema=SCHEMA)


outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)
