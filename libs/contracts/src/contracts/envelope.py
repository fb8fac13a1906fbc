"""The common envelope of every integration event and the registry of payload contracts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

registry: dict[str, type[EventPayload]] = {}


class EventPayload(BaseModel):
    """Base of every payload; subclasses set `event_type` and `version` and are registered."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_type: ClassVar[str]
    version: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "event_type" in cls.__dict__:
            key = cls.routing_key()
            if key in registry:
                raise ValueError(f"duplicate contract {key}")
            registry[key] = cls

    @classmethod
    def routing_key(cls) -> str:
        return f"{cls.event_type}.v{cls.version}"


class Envelope(BaseModel):
    """Metadata around a payload; `routing_key` is `<type>.v<version>`."""

    model_config = ConfigDict(extra="ignore")

    event_id: uuid.UUID
    type: str = Field(description="event name without version, e.g. tickets.ticket.opened")
    version: int = Field(ge=1)
    occurred_at: datetime
    producer: str
    correlation_id: str | None = None
    causation_id: str | None = None
    payload: dict[str, Any]

    @property
    def routing_key(self) -> str:
        return f"{self.type}.v{self.version}"


P = TypeVar("P", bound=EventPayload)


class Event(Envelope, Generic[P]):
    """The envelope of one contract, its payload typed: what a consumer of that contract
    receives, and what the AsyncAPI documents describe."""

    payload: P


def make_envelope(payload: EventPayload, *, producer: str, correlation_id: str | None = None,
                  causation_id: str | None = None) -> Envelope:
    return Envelope(
        event_id=uuid.uuid4(),
        type=payload.event_type,
        version=payload.version,
        occurred_at=datetime.now(UTC),
        producer=producer,
        correlation_id=correlation_id,
        causation_id=causation_id,
        payload=payload.model_dump(mode="json"),
    )


def parse_payload(envelope: Envelope) -> EventPayload:
    """Validate the payload against its registered contract (raises on an unknown type)."""
    model = registry[envelope.routing_key]
    return model.model_validate(envelope.payload)


def events_of(context: str) -> list[type[EventPayload]]:
    """The contracts of one bounded context (`billing`, `identity`, ...): the events its
    service publishes, since event types are named after their producer's context."""
    return [model for key, model in sorted(registry.items())
            if model.event_type.split(".", 1)[0] == context]
