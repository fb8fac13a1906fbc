"""Released contracts are frozen: the committed JSON Schemas must stay compatible and current."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import pytest

from contracts import Envelope, make_envelope, parse_payload, registry
from contracts.schemas import SCHEMA_DIR, check, generate, incompatibilities
from contracts.tickets import TicketClosedV1

EXPECTED = {
    "identity.user.registered.v1", "identity.user.blocked.v1", "identity.user.unblocked.v1",
    "identity.user.role_changed.v1",
    "billing.invoice.created.v1", "billing.payment.detected.v1", "billing.invoice.paid.v1",
    "billing.invoice.expired.v1", "billing.invoice.refunded.v1",
    "billing.balance.credited.v1", "billing.balance.debited.v1", "billing.promo_code.redeemed.v1",
    "billing.referral.rewarded.v1", "billing.referral.reversed.v1", "billing.renewal.reminder.v1",
    "provisioning.subscription.activated.v1", "provisioning.subscription.extended.v1",
    "provisioning.subscription.expiring.v1", "provisioning.subscription.expired.v1",
    "provisioning.subscription.suspended.v1", "provisioning.subscription.resumed.v1",
    "provisioning.subscription.renewal_due.v1", "provisioning.provision.failed.v1",
    "provisioning.subscription.limited.v1",
    "tickets.ticket.opened.v1", "tickets.message.added.v1", "tickets.ticket.status_changed.v1",
    "tickets.ticket.closed.v1", "tickets.note.added.v1", "tickets.ticket.assigned.v1",
    "telegram.support_reply.received.v1", "telegram.user_message.received.v1",
    "telegram.account.linked.v1", "telegram.stars_payment.received.v1",
    "telegram.support_command.received.v1",
    "telegram.account.created.v1",
}


def test_every_event_of_the_catalogue_has_a_contract():
    assert set(registry) == EXPECTED


def test_committed_schemas_are_current():
    current = generate()
    committed = {p.stem: json.loads(p.read_text()) for p in SCHEMA_DIR.glob("*.json")}
    assert set(committed) == set(current), "run `make schemas` and commit the result"
    for key, schema in current.items():
        assert committed[key] == json.loads(json.dumps(schema)), f"{key}: run `make schemas`"


def test_released_contracts_are_compatible():
    assert check() == []


def _released(key: str) -> dict:
    return json.loads((SCHEMA_DIR / f"{key}.json").read_text())


def _remove_field(s):
    s["properties"].pop("subject")


def _add_required_field(s):
    s["properties"]["brand_new"] = {"type": "string"}
    s["required"].append("brand_new")


def _retype_field(s):
    s["properties"]["seq"]["type"] = "string"


@pytest.mark.parametrize("change,expected", [
    (_remove_field, "removed"),
    (_add_required_field, "became required"),
    (_retype_field, "type changed"),
])
def test_incompatible_changes_are_detected(change, expected):
    released = _released("tickets.ticket.opened.v1")
    changed = copy.deepcopy(released)
    change(changed)
    problems = incompatibilities(released, changed)
    assert any(expected in p for p in problems), problems


def test_adding_an_optional_field_is_compatible():
    released = _released("tickets.ticket.opened.v1")
    changed = copy.deepcopy(released)
    changed["properties"]["priority"] = {"type": "string"}
    assert incompatibilities(released, changed) == []


def test_envelope_round_trip_and_routing_key():
    payload = TicketClosedV1(ticket_id="t1", user_id="u1", closed_by_role="USER",
                             closed_at=datetime.now(UTC), seq=3)
    env = make_envelope(payload, producer="tickets", correlation_id="c1")
    assert env.routing_key == "tickets.ticket.closed.v1"
    again = Envelope.model_validate_json(env.model_dump_json())
    assert parse_payload(again) == payload
    assert again.correlation_id == "c1" and again.producer == "tickets"
