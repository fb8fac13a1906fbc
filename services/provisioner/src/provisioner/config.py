"""Settings of the provisioner service."""

from pydantic import Field

from runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "provisioner"
    schema_name: str = "provisioning"
    port: int = Field(8102, alias="PROVISIONER_PORT")
    db_role: str = Field("provisioner_svc", alias="PROVISIONER_DB_ROLE")
    db_password: str = Field("provisioner-dev-password", alias="PROVISIONER_DB_PASSWORD")

    def service_schema(self) -> str:
        return self.schema_name
