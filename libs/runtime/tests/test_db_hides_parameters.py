"""A database error's text never carries the statement's bound values (customer text)."""

from __future__ import annotations

import traceback
from typing import ClassVar

import pytest
import sqlalchemy as sa

from runtime.db import Database
from runtime.settings import ServiceSettings

CUSTOMER_TEXT = "my-card-is-4111-1111-and-my-secret-is-hunter2"


class LocalSettings(ServiceSettings):
    service_name: ClassVar[str] = "hide_parameters_test"
    schema_name: ClassVar[str] = "public"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    db_role: str = "postgres"
    db_password: str = "unused-with-trust-auth"


async def test_a_failing_statement_s_error_and_traceback_omit_its_parameters():
    db = Database(LocalSettings())
    try:
        with pytest.raises(sa.exc.DBAPIError) as failed:
            async with db.transaction() as session:
                await session.execute(sa.text("SELECT CAST(:body AS text), 1 / 0"),
                                      {"body": CUSTOMER_TEXT})
        logged = "".join(traceback.format_exception(failed.value))
        assert "division by zero" in logged  # the error itself is still there to read
        assert CUSTOMER_TEXT not in logged and CUSTOMER_TEXT not in repr(failed.value)
        assert "hidden due to hide_parameters" in str(failed.value)
    finally:
        await db.dispose()
