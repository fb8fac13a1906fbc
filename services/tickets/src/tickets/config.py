"""Settings of the tickets service."""

from __future__ import annotations

from pydantic import Field, model_validator

from runtime.settings import service_settings


class Settings(service_settings("tickets", port=8103)):
    ticket_retention_days: float = Field(365, alias="TICKET_RETENTION_DAYS")
    # When the desk is staffed (tickets.hours): empty = always.
    support_hours: str = Field("", alias="SUPPORT_HOURS")
    support_timezone: str = Field("UTC", alias="SUPPORT_TIMEZONE")

    @model_validator(mode="after")
    def _hours_parse(self) -> Settings:
        from tickets.hours import SupportHours

        try:
            SupportHours.parse(self.support_hours, self.support_timezone)
        except ValueError as exc:
            raise ValueError(f"SUPPORT_HOURS / SUPPORT_TIMEZONE: {exc}") from exc
        return self
