"""Versioned integration-event contracts: the only code services share about each other.

A released contract is frozen: adding an optional field is allowed, anything else is a new
version published side by side. `libs/contracts/schemas/` holds the committed JSON Schemas and
the tests compare them with the models.
"""

from contracts import billing, identity, provisioning, telegram, tickets  # noqa: F401  (registers)
from contracts.envelope import (
    Envelope,
    Event,
    EventPayload,
    events_of,
    make_envelope,
    parse_payload,
    registry,
)

__all__ = ["Envelope", "Event", "EventPayload", "events_of", "make_envelope", "parse_payload",
           "registry"]
