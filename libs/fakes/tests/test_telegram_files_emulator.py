"""The Telegram emulator's files (fakes.telegram_files): a user's file stored for a test,
getFile and the download URL with their limits, the bot's sendDocument and sendPhoto uploads."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import httpx
import pytest

from fakes import telegram_files
from fakes.telegram import EmulatorConfig, create_app

TOKEN = "123456:TEST-TOKEN"
API = f"/bot{TOKEN}"
PDF = b"%PDF-1.7\n" + b"%%EOF\n" * 10


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(EmulatorConfig(token=TOKEN, forum_chat_ids=frozenset({-100777})))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://emulator") as c:
        yield c


async def test_a_users_file_is_fetched_with_get_file_and_the_download_url(client):
    r = await client.post("/_emulator/files", data={"kind": "document"},
                          files={"file": ("bill.pdf", PDF, "application/pdf")})
    doc = r.json()["document"]
    assert doc["file_name"] == "bill.pdf" and doc["mime_type"] == "application/pdf"
    assert doc["file_size"] == len(PDF)
    got = (await client.post(f"{API}/getFile", json={"file_id": doc["file_id"]})).json()
    assert got["ok"] and got["result"]["file_size"] == len(PDF)
    data = await client.get(f"/file/bot{TOKEN}/{got['result']['file_path']}")
    assert data.status_code == 200 and data.content == PDF
    assert (await client.get(f"/file/botWRONG/{got['result']['file_path']}")).status_code == 401
    assert (await client.get(f"/file/bot{TOKEN}/files/x/none")).status_code == 404
    bad = (await client.post(f"{API}/getFile", json={"file_id": "nope"})).json()
    assert bad["error_code"] == 400 and bad["description"] == "Bad Request: invalid file_id"

    photo = (await client.post("/_emulator/files", data={"kind": "photo"},
                               files={"file": ("p.jpg", b"\xff\xd8\xff" + bytes(9),
                                               "image/jpeg")})).json()["photo"]
    assert photo[0]["file_size"] == 12 and photo[0]["width"]


async def test_bots_may_download_20_mb_at_most(client):
    big = bytes(telegram_files.MAX_DOWNLOAD_BYTES + 1)
    doc = (await client.post("/_emulator/files", data={"kind": "document"},
                             files={"file": ("big.bin", big, "application/octet-stream")})
           ).json()["document"]
    r = (await client.post(f"{API}/getFile", json={"file_id": doc["file_id"]})).json()
    assert r["error_code"] == 400 and r["description"] == "Bad Request: file is too big"


async def test_send_document_records_the_upload_in_the_topic(client):
    topic = (await client.post(f"{API}/createForumTopic",
                               json={"chat_id": -100777, "name": "t"})).json()["result"]
    r = await client.post(f"{API}/sendDocument",
                          data={"chat_id": "-100777", "caption": "Here",
                                "message_thread_id": str(topic["message_thread_id"])},
                          files={"document": ("howto.pdf", PDF, "application/pdf")})
    msg = r.json()["result"]
    assert msg["document"]["file_name"] == "howto.pdf"
    assert msg["document"]["mime_type"] == "application/pdf"
    assert msg["document"]["file_unique_id"] == hashlib.sha256(PDF).hexdigest()[:16]
    assert msg["caption"] == "Here" and msg["message_thread_id"] == topic["message_thread_id"]
    r = await client.post(f"{API}/sendDocument", data={"chat_id": "5"})
    assert r.json()["description"] == "Bad Request: there is no document in the request"
    r = await client.post(f"{API}/sendDocument", data={"chat_id": "5", "caption": "x" * 1025},
                          files={"document": ("a.pdf", PDF, "application/pdf")})
    assert r.json()["description"] == "Bad Request: message caption is too long"


async def test_uploads_past_the_platforms_limits_are_refused(client):
    r = await client.post(f"{API}/sendPhoto", data={"chat_id": "5"},
                          files={"photo": ("p.jpg", bytes(telegram_files.MAX_PHOTO_BYTES + 1),
                                           "image/jpeg")})
    assert r.json()["description"] == "Bad Request: file is too big"
    r = await client.post(f"{API}/sendDocument", data={"chat_id": "5"},
                          files={"document": ("d.pdf", bytes(telegram_files.MAX_DOCUMENT_BYTES
                                                             + 1), "application/pdf")})
    assert r.status_code == 413 and r.json()["description"] == "Request Entity Too Large"
