"""The support desk against a real database and the tickets API served over HTTP: internal
notes (staff only, never announced as a message), assignment and the first response, canned
replies in the customer's language, and the operators' topic commands as the consumer gets them.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from contracts import make_envelope
from contracts.telegram import SupportCommandReceivedV1, UserMessageReceivedV1
from runtime import identity
from runtime.testing import serving
from tickets.app import create_api
from tickets.consumers import build_subscription

from .conftest import make_settings

SIGNING_KEY = "dev-internal-signing-key-change-me"
_ids = itertools.count(1)


def who(user: str, role: str = "USER") -> dict[str, str]:
    return {identity.HEADER: identity.sign(SIGNING_KEY, user, role, audience="tickets")}


def new_user() -> str:
    return f"u-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def api(migrated):
    async with serving(create_api(make_settings())) as url:
        async with httpx.AsyncClient(base_url=url, timeout=20) as c:
            yield c


async def deliver(db, event):
    env = make_envelope(event, producer="telegram")
    await build_subscription(db).handlers[event.routing_key()](env, event)


def command(ticket_id: str, cmd: str, argument: str = "", operator: int = 1001,
            name: str | None = "Olga"):
    n = next(_ids)
    return SupportCommandReceivedV1(
        ticket_id=ticket_id, command=cmd, argument=argument, operator_telegram_id=operator,
        operator_name=name, chat_id=-100777, telegram_message_id=uuid.uuid4().int % 10**9,
        update_id=n, received_at=datetime.now(UTC))


async def events(pg, ticket_id: str) -> list[str]:
    rows = await pg.fetch("SELECT routing_key FROM tickets.outbox"
                          " WHERE envelope->'payload'->>'ticket_id' = $1 ORDER BY id", ticket_id)
    return [r["routing_key"] for r in rows]


async def open_ticket(api, user: str) -> str:
    r = await api.post("/internal/tickets", headers=who(user),
                       json={"subject": "No connection", "body": "Timeout on every server"})
    assert r.status_code == 201, r.text
    return r.json()["ticket"]["id"]


async def test_a_note_is_shown_to_staff_only_and_never_announced_as_a_message(api, db, pg):
    user = new_user()
    tid = await open_ticket(api, user)
    r = await api.post(f"/internal/admin/tickets/{tid}/notes", headers=who("staff-1", "SUPPORT"),
                       json={"body": "Customer is on the old app version"})
    assert r.status_code == 201, r.text
    assert r.json()["message"]["kind"] == "NOTE"
    await deliver(db, command(tid, "note", "Checked the panel: user is active"))

    staff = (await api.get(f"/internal/admin/tickets/{tid}",
                           headers=who("staff-1", "SUPPORT"))).json()["ticket"]
    assert [(m["kind"], m["body"]) for m in staff["messages"]] == [
        ("MESSAGE", "Timeout on every server"),
        ("NOTE", "Customer is on the old app version"),
        ("NOTE", "Checked the panel: user is active")]
    assert staff["status"] == "OPEN" and staff["first_response_at"] is None  # a note is no answer

    own = (await api.get(f"/internal/tickets/{tid}", headers=who(user))).json()["ticket"]
    assert [m["body"] for m in own["messages"]] == ["Timeout on every server"]
    assert all(m["kind"] == "MESSAGE" for m in own["messages"])
    assert await events(pg, tid) == ["tickets.ticket.opened.v1", "tickets.note.added.v1",
                                     "tickets.note.added.v1"]


async def test_a_customer_cannot_write_notes_or_see_the_staff_view(api):
    user = new_user()
    tid = await open_ticket(api, user)
    r = await api.post(f"/internal/admin/tickets/{tid}/notes", headers=who(user),
                       json={"body": "sneaky"})
    assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN"
    r = await api.get(f"/internal/admin/tickets/{tid}", headers=who(user))
    assert r.status_code == 403
    r = await api.post(f"/internal/admin/tickets/{tid}/notes",
                       headers=who("staff-1", "SUPPORT"), json={"body": "\u200b"})
    assert r.status_code == 400 and r.json()["code"] == "VALIDATION_ERROR"


async def test_the_first_answer_sets_first_response_and_assigns_an_unassigned_ticket(api, db,
                                                                                    pg):
    user = new_user()
    tid = await open_ticket(api, user)
    staff = who("staff-7", "SUPPORT")
    r = await api.post(f"/internal/admin/tickets/{tid}/messages", headers=staff,
                       json={"body": "Which app do you use?"})
    assert r.status_code == 201
    first = (await api.get(f"/internal/admin/tickets/{tid}", headers=staff)).json()["ticket"]
    assert first["first_response_at"] is not None
    await api.post(f"/internal/admin/tickets/{tid}/messages", headers=staff,
                   json={"body": "Any news?"})
    again = (await api.get(f"/internal/admin/tickets/{tid}", headers=staff)).json()["ticket"]
    assert again["first_response_at"] == first["first_response_at"]
    # from the web panel the author is known to the gateway only: no automatic assignee here
    assert again["assignee"] is None

    tid2 = await open_ticket(api, user)
    await deliver(db, command(tid2, "assign", operator=555, name="Ivan"))
    t2 = (await api.get(f"/internal/admin/tickets/{tid2}", headers=staff)).json()["ticket"]
    assert t2["assignee"] == {"id": "tg:555", "name": "Ivan"}
    await deliver(db, command(tid2, "unassign", operator=555))
    t2 = (await api.get(f"/internal/admin/tickets/{tid2}", headers=staff)).json()["ticket"]
    assert t2["assignee"] is None
    assert (await events(pg, tid2))[-2:] == ["tickets.ticket.assigned.v1",
                                             "tickets.ticket.assigned.v1"]


async def test_an_operators_first_telegram_reply_assigns_them(db, api):
    from contracts.telegram import SupportReplyReceivedV1
    user = new_user()
    tid = await open_ticket(api, user)
    await deliver(db, SupportReplyReceivedV1(
        ticket_id=tid, body="Hello, looking into it", operator_telegram_id=4242,
        operator_name="Pavel", chat_id=-100777, telegram_message_id=uuid.uuid4().int % 10**9,
        update_id=1, received_at=datetime.now(UTC)))
    t = (await api.get(f"/internal/admin/tickets/{tid}",
                       headers=who("s", "SUPPORT"))).json()["ticket"]
    assert t["assignee"] == {"id": "tg:4242", "name": "Pavel"}
    assert t["first_response_at"] is not None and t["status"] == "PENDING_USER"


async def test_assign_through_the_api_and_unassign(api):
    tid = await open_ticket(api, new_user())
    staff = who("staff-1", "ADMIN")
    r = await api.post(f"/internal/admin/tickets/{tid}/assign", headers=staff,
                       params={"name": "ops@example.com"}, json={"user_id": "staff-9"})
    assert r.status_code == 200, r.text
    assert r.json()["ticket"]["assignee"] == {"id": "staff-9", "name": "ops@example.com"}
    r = await api.post(f"/internal/admin/tickets/{tid}/assign", headers=staff,
                       json={"user_id": None})
    assert r.json()["ticket"]["assignee"] is None


async def test_canned_replies_are_managed_and_sent_in_the_customers_language(api, db, pg):
    staff = who("staff-1", "SUPPORT")
    name = f"reinstall-{uuid.uuid4().hex[:6]}"
    r = await api.post("/internal/admin/canned-replies", headers=staff, json={
        "name": name, "body_en": "Please reinstall the app.",
        "body_ru": "Пожалуйста, переустановите приложение."})
    assert r.status_code == 201, r.text
    reply_id = r.json()["canned_reply"]["id"]
    dup = await api.post("/internal/admin/canned-replies", headers=staff, json={
        "name": name, "body_en": "x", "body_ru": "y"})
    assert dup.status_code == 409 and dup.json()["code"] == "CONFLICT"
    listed = (await api.get("/internal/admin/canned-replies", headers=staff)).json()
    assert name in [c["name"] for c in listed["canned_replies"]]

    # a Russian-speaking customer writes from the bot, the operator answers with /r
    user = new_user()
    await deliver(db, UserMessageReceivedV1(
        user_id=user, ticket_id=None, telegram_user_id=99, chat_id=99,
        telegram_message_id=next(_ids), text="Не работает VPN", update_id=next(_ids),
        received_at=datetime.now(UTC), language_code="ru"))
    tid = await pg.fetchval("SELECT id FROM tickets.tickets WHERE user_id = $1", user)
    await deliver(db, command(tid, "r", name.upper()))
    own = (await api.get(f"/internal/tickets/{tid}", headers=who(user))).json()["ticket"]
    assert own["messages"][-1]["body"] == "Пожалуйста, переустановите приложение."
    assert own["messages"][-1]["author_role"] == "SUPPORT"
    added = await pg.fetchval(
        "SELECT envelope->'payload'->>'canned' FROM tickets.outbox WHERE routing_key ="
        " 'tickets.message.added.v1' AND envelope->'payload'->>'ticket_id' = $1"
        " ORDER BY id DESC LIMIT 1", tid)
    assert added == name

    # an English (web) customer gets the English text; an unknown name sends nothing
    tid_en = await open_ticket(api, new_user())
    await deliver(db, command(tid_en, "r", name))
    await deliver(db, command(tid_en, "r", "no-such-reply"))
    t = (await api.get(f"/internal/admin/tickets/{tid_en}", headers=staff)).json()["ticket"]
    assert [m["body"] for m in t["messages"]][1:] == ["Please reinstall the app."]

    r = await api.patch(f"/internal/admin/canned-replies/{reply_id}", headers=staff,
                        json={"body_en": "Reinstall, please."})
    assert r.status_code == 200 and r.json()["canned_reply"]["body_en"] == "Reinstall, please."
    assert (await api.delete(f"/internal/admin/canned-replies/{reply_id}",
                             headers=staff)).json() == {"deleted": True}
    gone = await api.delete(f"/internal/admin/canned-replies/{reply_id}", headers=staff)
    assert gone.status_code == 404 and gone.json()["code"] == "NOT_FOUND"
    r = await api.get("/internal/admin/canned-replies", headers=who(new_user()))
    assert r.status_code == 403


async def test_close_from_the_topic_and_commands_land_once(api, db, pg):
    tid = await open_ticket(api, new_user())
    note = command(tid, "note", "Only once")
    await deliver(db, note)
    await deliver(db, note.model_copy(update={"update_id": note.update_id + 1000}))
    await deliver(db, command(tid, "close"))
    await deliver(db, command(tid, "close"))  # already closed: nothing more
    t = (await api.get(f"/internal/admin/tickets/{tid}",
                       headers=who("s", "SUPPORT"))).json()["ticket"]
    assert t["status"] == "CLOSED"
    assert [m["body"] for m in t["messages"] if m["kind"] == "NOTE"] == ["Only once"]
    assert (await events(pg, tid)).count("tickets.ticket.closed.v1") == 1


async def test_open_tickets_are_counted_by_age(api, db, pg):
    from prometheus_client import REGISTRY

    from tickets.desk import sample_open_tickets

    before = await sample_open_tickets(db)
    tid = await open_ticket(api, new_user())
    await pg.execute("UPDATE tickets.tickets SET created_at = now() - interval '5 hours'"
                     " WHERE id = $1", tid)
    after = await sample_open_tickets(db)
    assert after["4h_24h"] == before["4h_24h"] + 1
    assert REGISTRY.get_sample_value("tickets_open_by_age", {"age": "4h_24h"}) == after["4h_24h"]
    await deliver(db, command(tid, "close"))
    assert (await sample_open_tickets(db))["4h_24h"] == before["4h_24h"]


async def test_a_closed_ticket_is_rated_once_by_its_owner(api):
    user = new_user()
    tid = await open_ticket(api, user)
    r = await api.post(f"/internal/tickets/{tid}/rating", headers=who(user), json={"score": 5})
    assert r.status_code == 409 and r.json()["details"]["reason"] == "not_closed"
    assert (await api.post(f"/internal/tickets/{tid}/close", headers=who(user))).status_code == 200
    other = await api.post(f"/internal/tickets/{tid}/rating", headers=who(new_user()),
                           json={"score": 1})
    assert other.status_code == 404  # another user's ticket is not found
    for bad in ({"score": 0}, {"score": 6}, {"score": "5"}, {"score": 3, "comment": "\u200b"}):
        r = await api.post(f"/internal/tickets/{tid}/rating", headers=who(user), json=bad)
        assert r.status_code == 400 and r.json()["code"] == "VALIDATION_ERROR", bad
    r = await api.post(f"/internal/tickets/{tid}/rating", headers=who(user),
                       json={"score": 4, "comment": "Quick and kind"})
    assert r.status_code == 201 and r.json()["ticket"]["rating"] == 4
    again = await api.post(f"/internal/tickets/{tid}/rating", headers=who(user),
                           json={"score": 1})
    assert again.status_code == 409 and again.json()["details"]["reason"] == "already_rated"
    staff = (await api.get(f"/internal/admin/tickets/{tid}",
                           headers=who("s", "SUPPORT"))).json()["ticket"]
    assert (staff["rating"], staff["rating_comment"]) == (4, "Quick and kind")
