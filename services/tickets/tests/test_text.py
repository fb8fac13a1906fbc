"""What operators read is what the customer wrote: invisible characters removed from ticket
text, text with nothing visible refused (API) or dropped (Telegram events), NUL never stored."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from contracts import make_envelope
from contracts.telegram import SupportReplyReceivedV1, UserMessageReceivedV1
from tickets.consumers import build_subscription
from tickets.schemas import MessageCreate, TicketCreate

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"


def test_bidi_and_zero_width_characters_are_removed():
    t = TicketCreate(subject=f"Re{BIDI}fund{ZERO_WIDTH}", body="\u202eevil\u202c text\u200b")
    assert t.subject == "Refund"
    assert t.body == "evil text"
    assert MessageCreate(body=f"{ZERO_WIDTH}hi").body == "hi"


@pytest.mark.parametrize("subject,body", [
    (BIDI, "fine body"),  # nothing left of the subject
    ("Fine subject", ZERO_WIDTH),
    ("Fine subject", " \u3000\n\t"),  # whitespace only
    ("a\u200bb\u200c", "fine body"),  # two visible characters: below the 3 minimum
    ("Fine subject", "nul\x00inside"),
    ("Fine subject", "lone \ud800 surrogate"),
])
def test_text_without_enough_visible_characters_is_refused(subject, body):
    with pytest.raises(ValidationError):
        TicketCreate(subject=subject, body=body)


def _user_message(text: str, message_id: int) -> UserMessageReceivedV1:
    return UserMessageReceivedV1(user_id=f"u-{uuid.uuid4().hex[:8]}", ticket_id=None,
                                 telegram_user_id=5, chat_id=5, telegram_message_id=message_id,
                                 text=text, update_id=message_id, received_at=datetime.now(UTC))


async def _deliver(db, event) -> None:
    sub = build_subscription(db)
    env = make_envelope(event, producer="telegram")
    await sub.handlers[event.routing_key()](env, event)


async def test_telegram_text_is_cleaned_and_nul_never_reaches_postgres(db, pg):
    event = _user_message(f"Hel\x00lo \u202eadmin\u202c{ZERO_WIDTH} \ud800there", 1)
    await _deliver(db, event)
    row = await pg.fetchrow(
        "SELECT t.subject, m.body FROM tickets.tickets t JOIN tickets.messages m"
        " ON m.ticket_id = t.id WHERE t.user_id = $1", event.user_id)
    assert row["body"] == "Hello admin there"
    assert row["subject"] == "Hello admin there"


async def test_telegram_text_with_nothing_visible_opens_no_ticket(db, pg):
    event = _user_message(f"\x00{ZERO_WIDTH}{BIDI} \x00", 2)
    await _deliver(db, event)  # acknowledged, not retried or dead-lettered
    assert await pg.fetchval("SELECT count(*) FROM tickets.tickets WHERE user_id = $1",
                             event.user_id) == 0
    reply = SupportReplyReceivedV1(ticket_id="no-such-ticket", body="x", operator_telegram_id=1,
                                   chat_id=-1, telegram_message_id=3, update_id=3,
                                   received_at=datetime.now(UTC))
    with pytest.raises(LookupError):  # an unknown ticket still dead-letters as before
        await _deliver(db, reply)
