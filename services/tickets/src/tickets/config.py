"""Settings of the tickets service."""

from pydantic import Field

from runtime.settings import service_settings


class Settings(service_settings("tickets", port=8103)):
    ticket_retention_days: float = Field(365, alias="TICKET_RETENTION_DAYS")
