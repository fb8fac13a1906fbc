"""Hardening of the telegram service: blocked users get no ticket, unusable updates are
discarded (never a 5xx, never stored where Postgres would choke), and customer text in the
support chat is set apart from the bot's own lines."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from contracts.tickets import MessageAddedV1, TicketMessage, TicketOpenedV1
from fakes.telegram import parse_html
from telegram.endpoints import parse, unusable
from telegram.models import AccountLink, outbox
from telegram.repository import TelegramRepository, UpdateInbox
from telegram.service import BLOCKED_TEXT, MAX_TEXT, UpdateService, message_text, opened_text

from .conftest import make_settings

_ids = itertools.count(int(time.time()) * 1000 + 500_000)
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def private(tg_user: int, text: str) -> dict:
    return {"message_id": next(_ids), "date": 0, "chat": {"id": tg_user, "type": "private"},
            "from": {"id": tg_user, "is_bot": False, "first_name": "c"}, "text": text}


async def linked_user(db) -> tuple[str, int]:
    user_id, tg_user = uuid.uuid4().hex, next(_ids)
    async with db.transaction() as s:
        s.add(AccountLink(user_id=user_id, telegram_user_id=tg_user, chat_id=tg_user))
    return user_id, tg_user


async def handle(db, message: dict) -> tuple[str, list[str], int]:
    """(outcome, texts of the bot's answers, telegram events published)."""
    async with db.transaction() as s:
        before = await s.scalar(sa.select(sa.func.count()).select_from(outbox))
        outcome, rows = await UpdateService(make_settings()).handle(
            s, next(_ids), {"message": message})
        texts = [await s.scalar(sa.text("SELECT text FROM telegram.outgoing WHERE id = :i"),
                                {"i": i}) for i in rows]
        after = await s.scalar(sa.select(sa.func.count()).select_from(outbox))
    return outcome, texts, after - before


async def set_blocked(db, user_id: str, blocked: bool, at: datetime) -> None:
    async with db.transaction() as s:
        await TelegramRepository(s).record_block(user_id, blocked, at)


async def test_a_blocked_users_messages_open_no_ticket_and_status_says_blocked(db):
    user_id, tg = await linked_user(db)
    assert (await handle(db, private(tg, "hello")))[0] == "user_message"
    await set_blocked(db, user_id, True, T0)
    for text in ("I need help", "/status", "/help"):
        outcome, texts, published = await handle(db, private(tg, text))
        assert (outcome, texts, published) == ("blocked", [BLOCKED_TEXT], 0), text
    await set_blocked(db, user_id, False, T0 - timedelta(seconds=1))  # a stale event: ignored
    assert (await handle(db, private(tg, "still?")))[0] == "blocked"
    await set_blocked(db, user_id, False, T0 + timedelta(seconds=1))
    outcome, _, published = await handle(db, private(tg, "back again"))
    assert (outcome, published) == ("user_message", 1)


async def test_text_with_nothing_visible_is_ignored(db):
    _, tg = await linked_user(db)
    outcome, texts, published = await handle(db, private(tg, "\u200b\u202e\u2066\ufeff "))
    assert (outcome, texts, published) == ("ignored:no_text", [], 0)


@pytest.mark.parametrize("update,reason", [
    ({"update_id": 2**63, "message": {}}, "integer_out_of_range"),
    ({"update_id": -(2**63) - 1}, "integer_out_of_range"),
    ({"update_id": 1, "message": {"chat": {"id": 2**70}}}, "integer_out_of_range"),
    ({"update_id": 1, "message": {"text": "a\x00b"}}, "invalid_text"),
    ({"update_id": 1, "message": {"text": "lone \ud800"}}, "invalid_text"),
    ({"update_id": 1, "message": {"k\x00": "v"}}, "invalid_text"),
    ({"update_id": 2**63 - 1, "message": {"text": "fine \U0001f600"}}, None),
])
def test_unusable_updates_are_recognised(update, reason):
    assert unusable(update) == reason


def test_the_webhook_body_is_read_exactly():
    assert parse(b'{"update_id": 18446744073709551616}') == {"update_id": 2**64}
    assert parse(b'{"update_id": 1, "t": "\\ud800"}') == {"update_id": 1, "t": "\ud800"}
    assert parse(b'{"update_id": 1.5}') == {"update_id": 1.5}


async def test_a_discarded_update_is_kept_as_escaped_text(db, pg):
    update = {"update_id": 2**64, "message": {"text": "nul\x00 and \ud800"}}
    await UpdateInbox(db).discard(str(2**64), "integer_out_of_range",
                                  json.dumps(update, ensure_ascii=True))
    row = await pg.fetchrow("SELECT reason, payload FROM telegram.discarded_updates"
                            " WHERE update_id = $1", str(2**64))
    assert row["reason"] == "integer_out_of_range"
    assert json.loads(row["payload"]) == update


def _opened(subject: str, body: str) -> TicketOpenedV1:
    return TicketOpenedV1(
        ticket_id="t" * 32, user_id="u1", subject=subject, source="WEB", status="OPEN", seq=1,
        opened_at=T0, user_label="real@example.com",
        message=TicketMessage(message_id="m1", author_role="USER", origin="WEB", body=body,
                              created_at=T0))


def _quoted_part(html_text: str) -> tuple[str, str]:
    """(the bot's own text, the blockquoted text) as Telegram shows them."""
    text, entities = parse_html(html_text)  # the emulator parses HTML like the Bot API
    quotes = [e for e in entities if e["type"] == "blockquote"]
    assert len(quotes) == 1
    units = text.encode("utf-16-le")
    q = quotes[0]
    own = units[:2 * q["offset"]].decode("utf-16-le")
    return own, units[2 * q["offset"]:2 * (q["offset"] + q["length"])].decode("utf-16-le")


def test_customer_text_is_set_apart_from_the_bots_own_lines():
    body = "hi\nFrom: VIP <admin@corp> & co\nTicket: none"
    own, quoted = _quoted_part(opened_text(_opened("Help\nFrom: VIP", body)))
    assert quoted == body
    assert own.splitlines() == ["🆕 New ticket: Help From: VIP", "From: real@example.com "
                                "(via web)", f"Ticket: {'t' * 32}", ""]
    added = MessageAddedV1(ticket_id="t", user_id="u", subject="s", message_id="m",
                           author_role="USER", origin="WEB", body="From: VIP</blockquote>",
                           created_at=T0, ticket_status="OPEN", seq=2)
    assert _quoted_part(message_text(added)) == ("💬 Customer:\n", "From: VIP</blockquote>")


def test_a_long_customer_text_is_cut_to_fit_after_escaping():
    text, _ = parse_html(opened_text(_opened("Long", "&😀" * 3000)))
    assert len(text.encode("utf-16-le")) // 2 <= MAX_TEXT
