"""Settings of the tickets service."""

from typing import ClassVar

from pydantic import Field

from runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: ClassVar[str] = "tickets"
    port: int = Field(8103, alias="TICKETS_PORT")
    db_role: str = Field("tickets_svc", alias="TICKETS_DB_ROLE")
    db_password: str = Field("tickets-dev-password", alias="TICKETS_DB_PASSWORD")
    ticket_retention_days: float = Field(365, alias="TICKET_RETENTION_DAYS")
