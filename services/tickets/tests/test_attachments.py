"""Attachments through the tickets service's API on a real database: what is accepted (magic
bytes, 5 MB, 5 per message), who reads a file back (owner and staff; 404 for anyone else),
the event that names it, and retention taking it with its ticket."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from runtime import identity
from runtime.retention import run_rules
from runtime.testing import serving
from tickets import attachments
from tickets.app import create_api
from tickets.retention import rules

from .conftest import make_settings

SIGNING_KEY = "dev-internal-signing-key-change-me"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(64)
JPEG = b"\xff\xd8\xff\xe0" + bytes(64)
PDF = b"%PDF-1.7\n" + b"1 0 obj\n<<>>\nendobj\n" * 4


def who(user: str, role: str = "USER") -> dict[str, str]:
    return {identity.HEADER: identity.sign(SIGNING_KEY, user, role, audience="tickets")}


def new_user() -> str:
    return f"u-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def api(migrated):
    async with serving(create_api(make_settings())) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as c:
            yield c


async def open_ticket(api, user: str) -> str:
    r = await api.post("/internal/tickets", headers=who(user),
                       json={"subject": "Screenshot of the error", "body": "See the file"})
    assert r.status_code == 201, r.text
    return r.json()["ticket"]["id"]


async def upload(api, user: str, ticket_id: str, *files, body: str | None = None,
                 role: str = "USER"):
    data = {"body": body} if body is not None else {}
    return await api.post(f"/internal/tickets/{ticket_id}/attachments", headers=who(user, role),
                          files=[("file", f) for f in files], data=data)


async def test_an_upload_adds_a_message_with_its_files_and_the_owner_reads_them_back(api, pg):
    user = new_user()
    ticket_id = await open_ticket(api, user)
    r = await upload(api, user, ticket_id, ("shot.png", PNG, "image/png"),
                     ("bill.pdf", PDF, "application/octet-stream"), body="Here they are")
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["message"]["body"] == "Here they are"
    assert [(a["name"], a["content_type"], a["size"]) for a in out["message"]["attachments"]] \
        == [("shot.png", "image/png", len(PNG)), ("bill.pdf", "application/pdf", len(PDF))]
    assert out["attachment"] == out["message"]["attachments"][0]

    ticket = (await api.get(f"/internal/tickets/{ticket_id}", headers=who(user))).json()["ticket"]
    assert ticket["messages"][0]["attachments"] == []
    assert ticket["messages"][1]["attachments"] == out["message"]["attachments"]

    pdf_id = out["message"]["attachments"][1]["id"]
    got = await api.get(f"/internal/tickets/{ticket_id}/attachments/{pdf_id}", headers=who(user))
    assert got.status_code == 200
    assert got.content == PDF
    assert got.headers["content-type"] == "application/pdf"
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["content-disposition"].startswith('attachment; filename="bill.pdf"')

    row = await pg.fetchrow("SELECT sha256, size FROM tickets.attachments WHERE id = $1", pdf_id)
    assert row["size"] == len(PDF) and len(row["sha256"]) == 64
    event = await pg.fetchval(
        "SELECT envelope FROM tickets.outbox WHERE routing_key = 'tickets.message.added.v1'"
        " AND envelope->'payload'->>'ticket_id' = $1", ticket_id)
    names = [(a["name"], a["content_type"]) for a in json.loads(event)["payload"]["attachments"]]
    assert names == [("shot.png", "image/png"), ("bill.pdf", "application/pdf")]


async def test_without_text_the_message_is_the_files_names(api):
    user = new_user()
    ticket_id = await open_ticket(api, user)
    r = await upload(api, user, ticket_id, ("../../etc/photo.jpg", JPEG, "image/jpeg"))
    assert r.status_code == 201, r.text
    assert r.json()["message"]["body"] == "photo.jpg"
    assert r.json()["attachment"]["name"] == "photo.jpg"


async def test_another_customer_gets_404_and_staff_read_the_file(api):
    owner, other = new_user(), new_user()
    ticket_id = await open_ticket(api, owner)
    aid = (await upload(api, owner, ticket_id, ("a.png", PNG, "image/png"))).json()[
        "attachment"]["id"]
    path = f"/internal/tickets/{ticket_id}/attachments/{aid}"
    assert (await api.get(path, headers=who(other))).status_code == 404
    assert (await upload(api, other, ticket_id, ("b.png", PNG, "image/png"))).status_code == 404
    for role in ("SUPPORT", "ADMIN"):
        r = await api.get(path, headers=who(new_user(), role))
        assert r.status_code == 200 and r.content == PNG
    # the id of a file on another ticket, even the caller's own, is not found on this one
    mine = await open_ticket(api, other)
    assert (await api.get(f"/internal/tickets/{mine}/attachments/{aid}",
                          headers=who(other))).status_code == 404


@pytest.mark.parametrize(("name", "data", "ctype", "kind"), [
    ("evil.png", b"<html><script>alert(1)</script>", "image/png", "unsupported_type"),
    ("shot.gif", b"GIF89a" + bytes(16), "image/gif", "unsupported_type"),
    ("fake.pdf", PNG, "application/pdf", "type_mismatch"),
    ("empty.png", b"", "image/png", "empty_file"),
])
async def test_files_that_are_not_png_jpeg_or_pdf_are_refused_and_nothing_is_kept(
        api, pg, name, data, ctype, kind):
    user = new_user()
    ticket_id = await open_ticket(api, user)
    r = await upload(api, user, ticket_id, ("ok.png", PNG, "image/png"), (name, data, ctype))
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "VALIDATION_ERROR"
    assert r.json()["details"][0]["type"] == kind
    assert await pg.fetchval("SELECT count(*) FROM tickets.attachments WHERE ticket_id = $1",
                             ticket_id) == 0
    assert await pg.fetchval("SELECT count(*) FROM tickets.messages WHERE ticket_id = $1",
                             ticket_id) == 1


async def test_at_most_five_files_of_at_most_5_mb(api):
    user = new_user()
    ticket_id = await open_ticket(api, user)
    six = [(f"{i}.png", PNG, "image/png") for i in range(6)]
    r = await upload(api, user, ticket_id, *six)
    assert r.status_code == 400 and r.json()["details"][0]["type"] == "too_many_files"
    assert (await upload(api, user, ticket_id, *six[:5])).status_code == 201

    big = PNG + bytes(attachments.MAX_BYTES - len(PNG) + 1)
    r = await upload(api, user, ticket_id, ("big.png", big, "image/png"))
    assert r.status_code == 413 and r.json()["code"] == "PAYLOAD_TOO_LARGE"
    exact = big[:-1]
    assert (await upload(api, user, ticket_id, ("max.png", exact, "image/png"))).status_code \
        == 201


async def test_an_upload_needs_a_file_and_visible_text(api):
    user = new_user()
    ticket_id = await open_ticket(api, user)
    r = await api.post(f"/internal/tickets/{ticket_id}/attachments", headers=who(user),
                       data={"body": "no file"})
    assert r.status_code == 400
    r = await upload(api, user, ticket_id, ("a.png", PNG, "image/png"), body="\u200b\u200b")
    assert r.status_code == 201  # nothing visible: the files' names are the text
    r = await upload(api, user, ticket_id, ("a.png", PNG, "image/png"), body="x" * 4001)
    assert r.status_code == 400 and r.json()["details"][0]["loc"] == ["body", "body"]


async def test_attachments_go_with_their_ticket(api, pg, db):
    user = new_user()
    ticket_id = await open_ticket(api, user)
    aid = (await upload(api, user, ticket_id, ("a.pdf", PDF, "application/pdf"))).json()[
        "attachment"]["id"]
    assert (await api.post(f"/internal/tickets/{ticket_id}/close",
                           headers=who(user))).status_code == 200
    await pg.execute("UPDATE tickets.tickets SET closed_at = now() - interval '400 days'"
                     " WHERE id = $1", ticket_id)
    settings = make_settings()
    purged = await run_rules(db, "tickets", rules(settings),
                             now=datetime.now(UTC) + timedelta(seconds=1))
    assert purged["tickets_closed"] >= 1
    assert await pg.fetchval("SELECT count(*) FROM tickets.attachments WHERE id = $1", aid) == 0
    assert await pg.fetchval("SELECT count(*) FROM tickets.attachment_blobs"
                             " WHERE attachment_id = $1", aid) == 0


# --- files from Telegram (the telegram service's calls) ----------------------------------------

async def from_bot(api, user: str, data: bytes, name: str, message_id: int, caption=None,
                   chat_id: int = 555):
    form = {"chat_id": str(chat_id), "message_id": str(message_id)}
    if caption is not None:
        form["caption"] = caption
    return await api.post("/internal/telegram/attachments", headers=who(user), data=form,
                          files={"file": (name, data, "application/octet-stream")})


async def test_a_file_from_the_bot_lands_once_on_the_customers_open_ticket(api, pg):
    user = new_user()
    ticket_id = await open_ticket(api, user)
    mid = uuid.uuid4().int % 10**9
    r = await from_bot(api, user, PNG, "photo.jpg", mid, caption="The error")
    assert r.status_code == 200 and r.json() == {"ticket_id": ticket_id}
    again = await from_bot(api, user, PNG, "photo.jpg", mid, caption="The error")
    assert again.json() == {"ticket_id": None}
    rows = await pg.fetch("SELECT m.body, m.origin, a.content_type FROM tickets.attachments a"
                          " JOIN tickets.messages m ON m.id = a.message_id"
                          " WHERE a.ticket_id = $1", ticket_id)
    assert [tuple(r) for r in rows] == [("The error", "TELEGRAM", "image/png")]
    # without an open ticket the file opens one, its subject from the file's name
    other = new_user()
    r = await from_bot(api, other, PDF, "receipt.pdf", mid + 1)
    assert r.status_code == 200
    ticket = (await api.get(f"/internal/tickets/{r.json()['ticket_id']}",
                            headers=who(other))).json()["ticket"]
    assert ticket["source"] == "TELEGRAM" and ticket["subject"] == "receipt.pdf"
    assert ticket["messages"][0]["attachments"][0]["content_type"] == "application/pdf"
    # a file outside the rules is refused and adds nothing
    r = await from_bot(api, other, b"GIF89a....", "anim.gif", mid + 2)
    assert r.status_code == 400


async def test_an_operators_file_from_the_topic_answers_the_ticket(api, pg):
    user = new_user()
    ticket_id = await open_ticket(api, user)
    r = await api.post(f"/internal/admin/tickets/{ticket_id}/telegram-attachments",
                       headers=who("tg:1001", "SUPPORT"),
                       data={"chat_id": "-100777", "message_id": "42",
                             "operator_telegram_id": "1001", "operator_name": "Olga"},
                       files={"file": ("howto.pdf", PDF, "application/pdf")})
    assert r.status_code == 200 and r.json() == {"ticket_id": ticket_id}
    ticket = (await api.get(f"/internal/tickets/{ticket_id}", headers=who(user))).json()["ticket"]
    answer = ticket["messages"][1]
    assert (answer["author_role"], answer["body"]) == ("SUPPORT", "howto.pdf")
    assert ticket["status"] == "PENDING_USER"
    # a customer cannot post as an operator; an unknown ticket is a 404
    r = await api.post(f"/internal/admin/tickets/{ticket_id}/telegram-attachments",
                       headers=who(user), data={"chat_id": "1", "message_id": "1",
                                                "operator_telegram_id": "1"},
                       files={"file": ("a.pdf", PDF, "application/pdf")})
    assert r.status_code == 403
    r = await api.post("/internal/admin/tickets/nope/telegram-attachments",
                       headers=who("tg:1001", "SUPPORT"),
                       data={"chat_id": "1", "message_id": "1", "operator_telegram_id": "1"},
                       files={"file": ("a.pdf", PDF, "application/pdf")})
    assert r.status_code == 404
