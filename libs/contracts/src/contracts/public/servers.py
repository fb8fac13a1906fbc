"""The server pool's public shapes (`/admin/servers`): VPN servers as data.

Credentials (a panel's login or API token) are write-only: a request may set them, no answer
ever carries them (`has_credentials` says whether some are stored).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from contracts.public.common import NotNull, Strict, Text, Whole

ServerStatus = Literal["ACTIVE", "DRAINING", "DISABLED"]
ServerBackend = Literal["sandbox", "outline", "marzban", "remnawave", "xui"]
Location = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")]
Credential = Annotated[Text, StringConstraints(min_length=1, max_length=4096)]


def _portable(value: Any, depth: int = 0) -> Any:
    """A driver's options are stored as JSON and answered back: every number must survive the
    round trip (an integer within 64 bits, a finite float) and nesting stays shallow."""
    if depth > 8:
        raise ValueError("settings nest at most 8 levels")
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise ValueError("settings numbers must fit in 64 bits")
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("settings numbers must be finite")
        if abs(value) >= 2**63:  # stored as JSONB, 3e246 comes back as a 247-digit integer
            raise ValueError("settings numbers must fit in 64 bits")
        return value
    if isinstance(value, list):
        return [_portable(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {k: _portable(v, depth + 1) for k, v in value.items()}
    raise ValueError("settings must be JSON")


DriverSettings = Annotated[dict[str, Any], AfterValidator(_portable)]


class ServerOut(BaseModel):
    id: str
    name: str
    location: str
    backend: ServerBackend
    base_url: str | None
    settings: dict[str, Any] = Field(description="The driver's options (never credentials)")
    capacity: int = Field(description="How many subscriptions it may hold")
    load: int = Field(description="Subscriptions it holds now (ACTIVE or SUSPENDED)")
    status: ServerStatus
    healthy: bool
    has_credentials: bool
    created_at: datetime
    updated_at: datetime


class ServerList(BaseModel):
    servers: list[ServerOut]


class ServerEnvelope(BaseModel):
    server: ServerOut


class ServerCreate(Strict):
    name: Annotated[Text, StringConstraints(min_length=1, max_length=64)]
    location: Location = Field(description="Lower-case code, e.g. `de-fra`")
    backend: ServerBackend
    base_url: Annotated[Text, StringConstraints(max_length=500,
                                                pattern=r"^https?://\S+$")] | None = None
    settings: DriverSettings = Field(
        default_factory=dict, description="Driver options, e.g. `{\"proxies\": [\"vless\"]}`")
    credentials: dict[str, Credential] = Field(
        default_factory=dict, description="Write-only, e.g. `{\"username\", \"password\"}`")
    capacity: Whole = Field(ge=0, le=1_000_000)
    status: ServerStatus = "ACTIVE"


class ServerUpdate(Strict):
    """Only the fields sent change (never to null); the backend kind is fixed at creation."""

    model_config = ConfigDict(**Strict.model_config, json_schema_extra={"minProperties": 1})
    name: Text = NotNull(min_length=1, max_length=64)
    location: Location = NotNull()
    base_url: Text = NotNull(max_length=500, pattern=r"^https?://\S+$")
    settings: DriverSettings = NotNull()
    credentials: dict[str, Credential] = NotNull(description="Write-only; replaces the stored")
    capacity: Whole = NotNull(ge=0, le=1_000_000)
    status: ServerStatus = NotNull()

    @model_validator(mode="after")
    def _something(self) -> ServerUpdate:
        if not self.model_fields_set:
            raise ValueError("nothing to change")
        return self
