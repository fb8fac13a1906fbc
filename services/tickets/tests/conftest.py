"""Tickets service tests: a database of their own (per TEST_SLOT), migrated like production."""

from __future__ import annotations

from runtime.testing import database_fixtures, unit_database_url
from tickets.config import Settings


def make_settings() -> Settings:
    return Settings(DATABASE_URL=unit_database_url("tickets"))


migrated, db, pg = database_fixtures("tickets", make_settings)
