"""Tests of the Telegram emulator's shop-bot side: inline keyboards, button presses delivered as
callback queries, edits ("message is not modified"), photos, commands, deletes and a user who
blocked the bot."""

from __future__ import annotations

import hashlib
import io
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import segno
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from fakes import telegram as telegram_fake
from fakes.telegram import EmulatorConfig, create_app

TOKEN = "123456:TEST-TOKEN"
API = f"/bot{TOKEN}"
USER = 5001
KEYBOARD = {"inline_keyboard": [[{"text": "Buy", "callback_data": "m:buy"},
                                 {"text": "Site", "url": "https://example.com/app"}]]}


@pytest.fixture
def hook() -> Iterator[tuple[str, list[dict]]]:
    """A real webhook receiver (the emulator POSTs updates over HTTP)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    received: list[dict] = []
    app = FastAPI()

    @app.post("/hook")
    async def receive(request: Request) -> JSONResponse:
        received.append(await request.json())
        return JSONResponse({})

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}/hook", received
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(EmulatorConfig(token=TOKEN, forum_chat_ids=frozenset()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://emulator") as c:
        yield c


async def call(client: httpx.AsyncClient, method: str, **params: Any) -> httpx.Response:
    return await client.post(f"{API}/{method}", json=params)


async def ok(client: httpx.AsyncClient, method: str, **params: Any) -> Any:
    resp = await call(client, method, **params)
    assert resp.status_code == 200, resp.text
    return resp.json()["result"]


async def refused(client: httpx.AsyncClient, method: str, status: int, **params: Any) -> str:
    resp = await call(client, method, **params)
    body = resp.json()
    assert resp.status_code == status and body["ok"] is False and body["error_code"] == status
    assert set(body) == {"ok", "error_code", "description"}
    return body["description"]


async def test_keyboard_press_sends_a_callback_query_answered_once(client, hook) -> None:
    url, received = hook
    await ok(client, "setWebhook", url=url, allowed_updates=["message", "callback_query"])
    msg = await ok(client, "sendMessage", chat_id=USER, text="Menu", reply_markup=KEYBOARD)
    assert msg["reply_markup"] == KEYBOARD
    resp = await client.post("/_emulator/press", json={
        "chat_id": USER, "message_id": msg["message_id"], "from_id": USER, "data": "m:buy",
        "language_code": "ru"})
    assert resp.status_code == 200, resp.text
    query_id = resp.json()["callback_query_id"]
    (update,) = received
    cq = update["callback_query"]
    assert cq["id"] == query_id and cq["data"] == "m:buy"
    assert cq["from"]["language_code"] == "ru" and cq["message"]["message_id"] == \
        msg["message_id"] and cq["message"]["text"] == "Menu" and cq["chat_instance"]
    assert await ok(client, "answerCallbackQuery", callback_query_id=query_id, text="ok") is True
    assert "query is too old" in await refused(client, "answerCallbackQuery", 400,
                                               callback_query_id=query_id)
    assert "query is too old" in await refused(client, "answerCallbackQuery", 400,
                                               callback_query_id="42")
    queries = (await client.get("/_emulator/callback-queries")).json()["callback_queries"]
    answered_after = queries[0].pop("answered_after")
    assert queries == [{"id": query_id, "from_id": USER, "chat_id": USER,
                        "message_id": msg["message_id"], "data": "m:buy", "answered": True,
                        "text": "ok", "show_alert": False, "url": None}]
    assert 0 <= answered_after < 5
    # a link button opens its URL and sends nothing; an unknown button is a 404
    resp = await client.post("/_emulator/press", json={
        "chat_id": USER, "message_id": msg["message_id"], "from_id": USER, "text": "Site"})
    assert resp.json() == {"opened": "https://example.com/app"} and len(received) == 1
    resp = await client.post("/_emulator/press", json={
        "chat_id": USER, "message_id": msg["message_id"], "from_id": USER, "data": "nope"})
    assert resp.status_code == 404


async def test_bad_keyboards_are_refused(client) -> None:
    for markup, why in [
        ({"inline_keyboard": [[{"text": "x", "callback_data": "a" * 65}]]}, "BUTTON_DATA_INVALID"),
        ({"inline_keyboard": [[{"text": "x"}]]}, "exactly one of the optional fields"),
        ({"inline_keyboard": [[{"text": "x", "url": "javascript:1"}]]}, "BUTTON_URL_INVALID"),
    ]:
        assert why in await refused(client, "sendMessage", 400, chat_id=USER, text="m",
                                    reply_markup=markup)


async def test_edits_in_place_and_not_modified(client) -> None:
    msg = await ok(client, "sendMessage", chat_id=USER, text="Status: waiting",
                   reply_markup=KEYBOARD)
    ids = {"chat_id": USER, "message_id": msg["message_id"]}
    edited = await ok(client, "editMessageText", **ids, text="Status: <b>paid</b>",
                      parse_mode="HTML", reply_markup=KEYBOARD)
    assert edited["text"] == "Status: paid" and edited["entities"][0]["type"] == "bold"
    assert edited["message_id"] == msg["message_id"] and edited["edit_date"]
    # the same text and keyboard again: Telegram's 400
    description = await refused(client, "editMessageText", 400, **ids,
                                text="Status: <b>paid</b>", parse_mode="HTML",
                                reply_markup=KEYBOARD)
    assert description.startswith("Bad Request: message is not modified")
    # no reply_markup: the keyboard goes
    edited = await ok(client, "editMessageText", **ids, text="Status: paid", parse_mode="HTML")
    assert "reply_markup" not in edited and "entities" not in edited
    edited = await ok(client, "editMessageReplyMarkup", **ids, reply_markup=KEYBOARD)
    assert edited["reply_markup"] == KEYBOARD
    assert "not modified" in await refused(client, "editMessageReplyMarkup", 400, **ids,
                                           reply_markup=KEYBOARD)
    assert "message to edit not found" in await refused(
        client, "editMessageText", 400, chat_id=USER, message_id=999, text="x")
    shown = (await client.get("/_emulator/messages", params={"chat_id": USER})).json()
    assert shown["messages"][0]["reply_markup"] == KEYBOARD


async def test_send_photo_upload_and_delete(client) -> None:
    qr = segno.make("vless://abc@host:443", error="m")
    buf = io.BytesIO()
    qr.save(buf, kind="png", scale=4)
    png = buf.getvalue()
    resp = await client.post(f"{API}/sendPhoto", data={"chat_id": str(USER),
                                                       "caption": "Your key"},
                             files={"photo": ("qr.png", png, "image/png")})
    assert resp.status_code == 200, resp.text
    msg = resp.json()["result"]
    (size,) = msg["photo"]
    assert size["file_size"] == len(png) and size["width"] == size["height"] > 0
    assert msg["caption"] == "Your key"
    (logged,) = (await client.get("/_emulator/calls", params={"method": "sendPhoto"})
                 ).json()["calls"]
    assert logged["params"]["photo"]["sha256"] == hashlib.sha256(png).hexdigest()
    # the file_id sends it again; an unknown string is refused; a photo has no text to edit
    again = await ok(client, "sendPhoto", chat_id=USER, photo=size["file_id"])
    assert again["photo"][0]["file_size"] == len(png)
    assert "wrong remote file identifier" in await refused(client, "sendPhoto", 400,
                                                           chat_id=USER, photo="nope")
    assert "no photo" in await refused(client, "sendPhoto", 400, chat_id=USER)
    assert "no text in the message" in await refused(
        client, "editMessageText", 400, chat_id=USER, message_id=msg["message_id"], text="x")
    assert await ok(client, "deleteMessage", chat_id=USER, message_id=msg["message_id"]) is True
    assert "message to delete not found" in await refused(
        client, "deleteMessage", 400, chat_id=USER, message_id=msg["message_id"])
    assert (await client.get("/_emulator/deleted")).json()["deleted"] == [
        {"chat_id": USER, "message_id": msg["message_id"]}]


async def test_commands_per_language(client) -> None:
    ru = [{"command": "menu", "description": "Меню"}]
    en = [{"command": "menu", "description": "Menu"}]
    assert await ok(client, "setMyCommands", commands=ru, language_code="ru") is True
    assert await ok(client, "setMyCommands", commands=en) is True
    assert await ok(client, "getMyCommands", language_code="ru") == ru
    assert await ok(client, "getMyCommands") == en
    assert "BOT_COMMAND_INVALID" in await refused(
        client, "setMyCommands", 400, commands=[{"command": "Menu!", "description": "x"}])


async def test_blocked_user_is_forbidden_until_they_write(client, hook) -> None:
    url, _ = hook
    await ok(client, "setWebhook", url=url)
    msg = await ok(client, "sendMessage", chat_id=USER, text="hi")
    assert (await client.post(f"/_emulator/users/{USER}/block", json={})).json()["blocked"]
    for method, params in [("sendMessage", {"text": "x"}),
                           ("editMessageText", {"message_id": msg["message_id"], "text": "y"})]:
        assert await refused(client, method, 403, chat_id=USER, **params) == \
            "Forbidden: bot was blocked by the user"
    await ok(client, "sendMessage", chat_id=USER + 1, text="others still get messages")
    resp = await client.post("/_emulator/updates", json={"chat_id": USER, "from_id": USER,
                                                         "text": "/start"})
    assert resp.status_code == 200
    await ok(client, "sendMessage", chat_id=USER, text="welcome back")


async def test_a_callback_query_answered_too_late_is_refused(client, hook, monkeypatch) -> None:
    url, _ = hook
    await ok(client, "setWebhook", url=url, allowed_updates=["callback_query"])
    msg = await ok(client, "sendMessage", chat_id=USER, text="Menu", reply_markup=KEYBOARD)
    resp = await client.post("/_emulator/press", json={
        "chat_id": USER, "message_id": msg["message_id"], "from_id": USER, "data": "m:buy"})
    query_id = resp.json()["callback_query_id"]
    monkeypatch.setattr(telegram_fake, "CALLBACK_QUERY_TTL", 0.0)  # as if 15 s had passed
    assert "query is too old" in await refused(client, "answerCallbackQuery", 400,
                                               callback_query_id=query_id)
