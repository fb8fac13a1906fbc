"""Field types and models every public schema uses."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
)


class Strict(BaseModel):
    """A request body: unknown fields refused, no type coercion (`"1"` is not a number)."""

    model_config = ConfigDict(extra="forbid", strict=True, regex_engine="python-re")


def _no_nul(value: str) -> str:
    if "\x00" in value:  # PostgreSQL text cannot hold NUL: refuse it as invalid input
        raise ValueError("must not contain NUL characters")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]


def integral(value):
    """JSON Schema's `integer` includes 2.0: accept a float that is a whole number."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# An integer field of a strict model that takes `2.0` too, as the document's `integer` promises.
Whole = Annotated[int, BeforeValidator(integral)]


def _no_default(schema: dict) -> None:
    schema.pop("default", None)


def NotNull(**constraints):  # noqa: N802 - used like a type
    """A PATCH field that may be left out but not set to null (the document says so)."""
    return Field(None, json_schema_extra=_no_default, **constraints)


Code = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
Ident = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]

# An amount in an answer: a Decimal inside, a decimal string on the wire.
Money = Annotated[Decimal, PlainSerializer(lambda v: format(v, "f"), return_type=str),
                  WithJsonSchema({"type": "string", "description": "Decimal amount as a string",
                                  "examples": ["9.99"]})]


class ErrorOut(BaseModel):
    code: str
    message: str
    details: object | None = None


class WebhookAck(BaseModel):
    ok: bool
