"""Settings of the billing service."""

from pydantic import Field

from runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "billing"
    schema_name: str = "billing"
    port: int = Field(8101, alias="BILLING_PORT")
    db_role: str = Field("billing_svc", alias="BILLING_DB_ROLE")
    db_password: str = Field("billing-dev-password", alias="BILLING_DB_PASSWORD")

    def service_schema(self) -> str:
        return self.schema_name
