"""Tests of the Telegram Bot API emulator (Bot API side over ASGI, webhooks over real HTTP)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from fakes.telegram import EmulatorConfig, create_app

TOKEN = "123456:TEST-TOKEN"
FORUM = -1001000000001
GROUP = -1001000000002
USER = 1001
API = f"/bot{TOKEN}"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(EmulatorConfig(token=TOKEN, forum_chat_ids=frozenset({FORUM})))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as c:
        yield c


async def call(client: httpx.AsyncClient, method: str, **params: Any) -> httpx.Response:
    return await client.post(f"{API}/{method}", json=params)


async def ok(client: httpx.AsyncClient, method: str, **params: Any) -> Any:
    resp = await call(client, method, **params)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["ok"] is True
    return body["result"]


async def new_topic(client: httpx.AsyncClient, name: str = "Ticket #1") -> int:
    result = await ok(client, "createForumTopic", chat_id=FORUM, name=name)
    return result["message_thread_id"]


# --------------------------------------------------------------------------- a real webhook


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class WebhookServer:
    url: str
    received: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    status: int = 200


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    """A tiny real uvicorn server in a background thread recording what it is POSTed."""
    sock = socket.socket()  # bound now and served as it is: a free port could be taken
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server_state = WebhookServer(url=f"http://127.0.0.1:{port}/telegram/webhook")
    app = FastAPI()

    @app.post("/telegram/webhook")
    async def receive(request: Request) -> JSONResponse:
        server_state.received.append((dict(request.headers), await request.json()))
        return JSONResponse({}, status_code=server_state.status)

    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "webhook server did not start"
            time.sleep(0.01)
        yield server_state
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


# --------------------------------------------------------------------------- protocol basics


async def test_get_me(client: httpx.AsyncClient) -> None:
    me = await ok(client, "getMe")
    assert me["id"] == 123456
    assert me["is_bot"] is True
    assert me["username"] == "vpn_support_bot"
    assert me["can_join_groups"] is True
    assert me["first_name"]


async def test_get_and_form_and_query_params(client: httpx.AsyncClient) -> None:
    assert (await client.get(f"{API}/getMe")).json()["ok"] is True
    resp = await client.post(
        f"{API}/sendMessage",
        data={"chat_id": str(USER), "text": "hi", "link_preview_options": '{"is_disabled":true}'},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["result"]["chat"] == {
        "id": USER,
        "first_name": f"User {USER}",
        "type": "private",
    }
    resp = await client.get(f"{API}/sendMessage", params={"chat_id": USER, "text": "q"})
    assert resp.json()["result"]["text"] == "q"
    resp = await client.post(
        f"{API}/sendMessage", files={"chat_id": (None, str(USER)), "text": (None, "multi")}
    )
    assert resp.json()["result"]["text"] == "multi"
    calls = (await client.get("/_emulator/calls", params={"method": "sendMessage"})).json()
    first = calls["calls"][0]["params"]
    assert first["chat_id"] == USER
    assert first["link_preview_options"] == {"is_disabled": True}


async def test_wrong_token_and_unknown_method(client: httpx.AsyncClient) -> None:
    resp = await client.post("/bot999:WRONG/getMe")
    assert resp.status_code == 401
    assert resp.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
    resp = await client.post(f"{API}/sendPigeon")
    assert resp.status_code == 404
    assert resp.json() == {"ok": False, "error_code": 404, "description": "Not Found"}


async def test_set_webhook_secret_validation(client: httpx.AsyncClient) -> None:
    resp = await call(
        client, "setWebhook", url="https://bot.example/hook", secret_token="bad secret!"
    )
    assert resp.status_code == 400
    assert resp.json()["ok"] is False
    assert resp.json()["error_code"] == 400
    assert resp.json()["description"].startswith("Bad Request: ")
    resp = await call(client, "setWebhook", url="https://bot.example/hook", secret_token="x" * 257)
    assert resp.status_code == 400

    assert (
        await ok(client, "setWebhook", url="https://bot.example/hook", secret_token="a-Z_9") is True
    )
    info = await ok(client, "getWebhookInfo")
    assert info["url"] == "https://bot.example/hook"
    assert info["has_custom_certificate"] is False
    assert info["pending_update_count"] == 0
    assert "secret_token" not in info
    assert await ok(client, "deleteWebhook") is True
    assert (await ok(client, "getWebhookInfo"))["url"] == ""


async def test_send_message_text_validation(client: httpx.AsyncClient) -> None:
    resp = await call(client, "sendMessage", chat_id=USER, text="")
    assert resp.status_code == 400
    assert resp.json() == {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: message text is empty",
    }
    resp = await call(client, "sendMessage", chat_id=USER, text="x" * 4097)
    assert resp.json()["description"] == "Bad Request: message is too long"
    assert (await ok(client, "sendMessage", chat_id=USER, text="x" * 4096))["text"] == "x" * 4096


async def test_html_parse_mode_is_parsed_into_text_and_entities(client: httpx.AsyncClient
                                                                 ) -> None:
    msg = await ok(client, "sendMessage", chat_id=USER, parse_mode="HTML",
                   text="🆕 <b>a &lt;b&gt;</b>\n<blockquote>From: VIP &amp; co</blockquote>")
    assert msg["text"] == "🆕 a <b>\nFrom: VIP & co"
    assert msg["entities"] == [{"type": "bold", "offset": 3, "length": 5},
                               {"type": "blockquote", "offset": 9, "length": 14}]
    for bad in ("<x>hi</x>", "a < b", "<b>open", "<b>x</i>", "&nbsp;", "</b>"):
        resp = await call(client, "sendMessage", chat_id=USER, parse_mode="HTML", text=bad)
        assert resp.status_code == 400, bad
        assert resp.json()["description"].startswith("Bad Request: can't parse entities"), bad
    # the 4096 limit counts the parsed text, not the markup
    long = await ok(client, "sendMessage", chat_id=USER, parse_mode="HTML",
                    text="<blockquote>" + "&amp;" * 4096 + "</blockquote>")
    assert long["text"] == "&" * 4096
    plain = await ok(client, "sendMessage", chat_id=USER, text="<b>kept</b>")
    assert plain["text"] == "<b>kept</b>" and "entities" not in plain


# --------------------------------------------------------------------------- chats and topics


async def test_send_message_into_forum_topic(client: httpx.AsyncClient) -> None:
    thread = await new_topic(client)
    msg = await ok(
        client, "sendMessage", chat_id=FORUM, text="hello topic", message_thread_id=thread
    )
    assert msg["message_thread_id"] == thread
    assert msg["is_topic_message"] is True
    assert msg["chat"]["id"] == FORUM
    assert msg["chat"]["type"] == "supergroup"
    assert msg["chat"]["is_forum"] is True
    assert msg["from"]["is_bot"] is True
    assert msg["text"] == "hello topic"
    assert isinstance(msg["date"], int)
    assert msg["message_id"] > thread  # ids increase per chat

    second = await ok(client, "sendMessage", chat_id=FORUM, text="again", message_thread_id=thread)
    assert second["message_id"] == msg["message_id"] + 1

    resp = await call(client, "sendMessage", chat_id=FORUM, text="x", message_thread_id=9999)
    assert resp.status_code == 400
    assert resp.json()["description"] == "Bad Request: message thread not found"

    general = await ok(client, "sendMessage", chat_id=FORUM, text="general")
    assert "message_thread_id" not in general
    assert "is_topic_message" not in general


async def test_send_message_into_plain_group_with_reply(client: httpx.AsyncClient) -> None:
    first = await ok(client, "sendMessage", chat_id=GROUP, text="question")
    reply = await ok(
        client,
        "sendMessage",
        chat_id=GROUP,
        text="answer",
        message_thread_id=first["message_id"],
        reply_parameters={"message_id": first["message_id"], "allow_sending_without_reply": True},
    )
    assert reply["chat"]["type"] == "supergroup"
    assert "is_forum" not in reply["chat"]
    assert "is_topic_message" not in reply
    assert "message_thread_id" not in reply
    assert reply["reply_to_message"]["message_id"] == first["message_id"]
    assert reply["reply_to_message"]["text"] == "question"
    assert "reply_to_message" not in reply["reply_to_message"]

    # Replying to a reply embeds only one level.
    third = await ok(
        client, "sendMessage", chat_id=GROUP, text="more", reply_to_message_id=reply["message_id"]
    )
    assert third["reply_to_message"]["message_id"] == reply["message_id"]
    assert "reply_to_message" not in third["reply_to_message"]

    resp = await call(
        client, "sendMessage", chat_id=GROUP, text="x", reply_parameters={"message_id": 777}
    )
    assert resp.json()["description"] == "Bad Request: message to be replied not found"
    lenient = await ok(
        client,
        "sendMessage",
        chat_id=GROUP,
        text="x",
        reply_parameters={"message_id": 777, "allow_sending_without_reply": True},
    )
    assert "reply_to_message" not in lenient

    chat = await ok(client, "getChat", chat_id=GROUP)
    assert chat["type"] == "supergroup"
    assert chat["is_forum"] is False
    assert (await ok(client, "getChat", chat_id=FORUM))["is_forum"] is True


async def test_create_forum_topic_on_non_forum_chat(client: httpx.AsyncClient) -> None:
    for chat_id in (GROUP, USER):
        resp = await call(client, "createForumTopic", chat_id=chat_id, name="Ticket")
        assert resp.status_code == 400
        assert resp.json() == {
            "ok": False,
            "error_code": 400,
            "description": "Bad Request: the chat is not a forum",
        }
    topic = await ok(client, "createForumTopic", chat_id=FORUM, name="Ticket", icon_color=16766590)
    assert set(topic) == {"message_thread_id", "name", "icon_color"}
    assert topic["name"] == "Ticket"
    assert topic["icon_color"] == 16766590
    resp = await call(client, "createForumTopic", chat_id=FORUM, name="x" * 129)
    assert resp.status_code == 400


async def test_close_topic_twice_is_not_modified(client: httpx.AsyncClient) -> None:
    thread = await new_topic(client)
    assert await ok(client, "closeForumTopic", chat_id=FORUM, message_thread_id=thread) is True
    resp = await call(client, "closeForumTopic", chat_id=FORUM, message_thread_id=thread)
    assert resp.status_code == 400
    assert resp.json()["description"] == "Bad Request: TOPIC_NOT_MODIFIED"

    topics = (await client.get("/_emulator/topics", params={"chat_id": FORUM})).json()["topics"]
    assert topics == [
        {"chat_id": FORUM, "message_thread_id": thread, "name": "Ticket #1", "closed": True}
    ]
    # Sending into a closed topic is allowed (and recorded).
    await ok(client, "sendMessage", chat_id=FORUM, text="late", message_thread_id=thread)

    assert await ok(client, "reopenForumTopic", chat_id=FORUM, message_thread_id=thread) is True
    resp = await call(client, "reopenForumTopic", chat_id=FORUM, message_thread_id=thread)
    assert resp.json()["description"] == "Bad Request: TOPIC_NOT_MODIFIED"
    assert (
        await ok(client, "editForumTopic", chat_id=FORUM, message_thread_id=thread, name="Renamed")
        is True
    )
    topics = (await client.get("/_emulator/topics")).json()["topics"]
    assert topics[0]["name"] == "Renamed"
    assert topics[0]["closed"] is False


# --------------------------------------------------------------------------- faults


async def test_fault_429_with_retry_after_then_success(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/_emulator/faults",
        json={"status": 429, "count": 1, "retry_after": 3, "methods": ["sendMessage"]},
    )
    assert resp.status_code == 200
    assert (await ok(client, "getMe"))["is_bot"] is True  # other methods unaffected

    resp = await call(client, "sendMessage", chat_id=USER, text="hi")
    assert resp.status_code == 429
    assert resp.json() == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 3",
        "parameters": {"retry_after": 3},
    }
    assert (await ok(client, "sendMessage", chat_id=USER, text="hi"))["text"] == "hi"

    stats = (await client.get("/_emulator/stats")).json()
    assert stats == {"calls": 2, "failed": 1}
    methods = [c["method"] for c in (await client.get("/_emulator/calls")).json()["calls"]]
    assert methods == ["getMe", "sendMessage"]


async def test_fault_count_based_5xx(client: httpx.AsyncClient) -> None:
    await client.post("/_emulator/faults", json={"status": 502, "count": 2, "methods": None})
    for _ in range(2):
        resp = await call(client, "sendMessage", chat_id=USER, text="hi")
        assert resp.status_code == 502
        assert resp.json() == {"ok": False, "error_code": 502, "description": "Bad Gateway"}
    await ok(client, "sendMessage", chat_id=USER, text="hi")

    await client.post("/_emulator/faults", json={"status": 503, "count": 5})
    assert (await call(client, "getMe")).status_code == 503
    assert (await client.delete("/_emulator/faults")).status_code == 200
    await ok(client, "getMe")
    assert (await client.get("/_emulator/stats")).json() == {"calls": 2, "failed": 3}


async def test_fault_time_based(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/_emulator/faults", json={"status": 429, "for_seconds": 0.4, "retry_after": 1}
    )
    assert resp.status_code == 200
    for _ in range(3):
        resp = await call(client, "sendMessage", chat_id=USER, text="hi")
        assert resp.status_code == 429
        assert resp.json()["parameters"] == {"retry_after": 1}
    await asyncio.sleep(0.5)
    await ok(client, "sendMessage", chat_id=USER, text="hi")
    assert (await client.get("/_emulator/stats")).json() == {"calls": 1, "failed": 3}


async def test_faults_are_exact_under_concurrency(client: httpx.AsyncClient) -> None:
    await client.post("/_emulator/faults", json={"status": 429, "count": 5, "retry_after": 2})
    responses = await asyncio.gather(
        *(call(client, "sendMessage", chat_id=USER, text=str(i)) for i in range(20))
    )
    assert sorted(r.status_code for r in responses) == [200] * 15 + [429] * 5
    messages = (await client.get("/_emulator/calls")).json()["calls"]
    ids = [c["result"]["message_id"] for c in messages]
    assert sorted(ids) == list(range(1, 16))
    assert [c["seq"] for c in messages] == list(range(1, 16))


async def test_fault_body_validation(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/_emulator/faults", json={"status": 429, "count": 1, "for_seconds": 1}
    )
    assert resp.status_code == 422
    resp = await client.post("/_emulator/faults", json={"status": 200})
    assert resp.status_code == 422


# --------------------------------------------------------------------------- updates / webhook


async def test_update_without_webhook_is_409(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/_emulator/updates", json={"chat_id": USER, "from_id": USER, "text": "hi"}
    )
    assert resp.status_code == 409
    assert resp.json() == {"detail": "no webhook set"}


async def test_updates_delivered_to_real_webhook(
    client: httpx.AsyncClient, webhook: WebhookServer
) -> None:
    await ok(client, "setWebhook", url=webhook.url, secret_token="s3cret")

    resp = await client.post(
        "/_emulator/updates",
        json={"chat_id": USER, "from_id": USER, "text": "/start", "from_username": "alice"},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status_code"] == 200
    update = body["update"]
    assert body["update_id"] == update["update_id"]
    message = update["message"]
    assert message["chat"] == {
        "id": USER,
        "first_name": f"User {USER}",
        "username": "alice",
        "type": "private",
    }
    assert message["from"] == {
        "id": USER,
        "is_bot": False,
        "first_name": f"User {USER}",
        "username": "alice",
    }
    assert message["text"] == "/start"
    assert isinstance(message["date"], int)
    assert "is_topic_message" not in message

    headers, delivered = webhook.received[-1]
    assert delivered == update
    assert headers["x-telegram-bot-api-secret-token"] == "s3cret"
    assert headers["content-type"] == "application/json"

    # The bot answers the user by replying to the injected message.
    answer = await ok(
        client,
        "sendMessage",
        chat_id=USER,
        text="welcome",
        reply_parameters={"message_id": message["message_id"]},
    )
    assert answer["reply_to_message"]["text"] == "/start"
    assert answer["chat"]["username"] == "alice"

    # Update ids increase; a wrong secret and a missing secret can be forced.
    webhook.status = 401
    resp = await client.post(
        "/_emulator/updates",
        json={"chat_id": USER, "from_id": USER, "text": "x", "secret_token": "wrong"},
    )
    assert resp.json()["status_code"] == 401
    assert resp.json()["update_id"] == update["update_id"] + 1
    assert webhook.received[-1][0]["x-telegram-bot-api-secret-token"] == "wrong"

    resp = await client.post(
        "/_emulator/updates",
        json={"chat_id": USER, "from_id": USER, "text": "x", "secret_token": None},
    )
    assert resp.json()["status_code"] == 401
    assert "x-telegram-bot-api-secret-token" not in webhook.received[-1][0]
    info = await ok(client, "getWebhookInfo")
    assert info["last_error_message"].startswith("Wrong response from the webhook: 401")


async def test_update_into_forum_topic_with_reply(
    client: httpx.AsyncClient, webhook: WebhookServer
) -> None:
    await ok(client, "setWebhook", url=webhook.url)
    thread = await new_topic(client)
    bot_msg = await ok(
        client, "sendMessage", chat_id=FORUM, text="user wrote", message_thread_id=thread
    )
    resp = await client.post(
        "/_emulator/updates",
        json={
            "chat_id": FORUM,
            "from_id": 1001,
            "from_username": "operator",
            "text": "operator answer",
            "message_thread_id": thread,
            "reply_to_message_id": bot_msg["message_id"],
        },
    )
    message = resp.json()["update"]["message"]
    assert message["message_thread_id"] == thread
    assert message["is_topic_message"] is True
    assert message["chat"]["is_forum"] is True
    assert message["message_id"] == bot_msg["message_id"] + 1
    assert message["reply_to_message"]["text"] == "user wrote"
    assert message["reply_to_message"]["from"]["is_bot"] is True
    headers, _ = webhook.received[-1]
    assert "x-telegram-bot-api-secret-token" not in headers

    # A thread id in a non-forum group: kept, but not a topic message.
    resp = await client.post(
        "/_emulator/updates",
        json={"chat_id": GROUP, "from_id": 5, "text": "hi", "message_thread_id": 3},
    )
    assert "is_topic_message" not in resp.json()["update"]["message"]


async def test_full_update_is_delivered_as_given(
    client: httpx.AsyncClient, webhook: WebhookServer
) -> None:
    await ok(client, "setWebhook", url=webhook.url, secret_token="abc")
    raw = {
        "callback_query": {
            "id": "42",
            "from": {"id": USER, "is_bot": False, "first_name": "A"},
            "chat_instance": "1",
            "data": "pay",
        }
    }
    resp = await client.post("/_emulator/updates", json={"update": raw})
    body = resp.json()
    assert body["update"]["callback_query"] == raw["callback_query"]
    assert isinstance(body["update"]["update_id"], int)
    given = {"update_id": 500, **raw}
    resp = await client.post("/_emulator/updates", json={"update": given})
    assert webhook.received[-1][1] == given
    resp = await client.post("/_emulator/updates", json={"update": raw})
    assert resp.json()["update_id"] == 501


async def test_webhook_unreachable_reports_502(client: httpx.AsyncClient) -> None:
    await ok(client, "setWebhook", url=f"http://127.0.0.1:{free_port()}/hook")
    resp = await client.post(
        "/_emulator/updates", json={"chat_id": USER, "from_id": USER, "text": "x"}
    )
    assert resp.status_code == 502
    assert "webhook delivery failed" in resp.json()["detail"]


# --------------------------------------------------------------------------- call log & reset


async def test_calls_log_filters_and_reset(client: httpx.AsyncClient) -> None:
    thread = await new_topic(client)
    await ok(client, "sendMessage", chat_id=FORUM, text="a", message_thread_id=thread)
    await ok(client, "sendMessage", chat_id=USER, text="b")
    await call(client, "sendMessage", chat_id=USER, text="")  # failed: not logged

    calls = (await client.get("/_emulator/calls")).json()["calls"]
    assert [c["method"] for c in calls] == ["createForumTopic", "sendMessage", "sendMessage"]
    assert [c["seq"] for c in calls] == [1, 2, 3]
    assert calls[1]["params"] == {"chat_id": FORUM, "text": "a", "message_thread_id": thread}
    assert calls[1]["result"]["message_thread_id"] == thread

    by_chat = (await client.get("/_emulator/calls", params={"chat_id": USER})).json()["calls"]
    assert [c["params"]["text"] for c in by_chat] == ["b"]
    by_method = (
        await client.get("/_emulator/calls", params={"method": "createForumTopic"})
    ).json()["calls"]
    assert len(by_method) == 1
    assert (await client.get("/_emulator/stats")).json() == {"calls": 3, "failed": 1}

    await ok(client, "setWebhook", url="https://bot.example/hook")
    assert (await client.post("/_emulator/reset")).status_code == 200
    assert (await client.get("/_emulator/calls")).json() == {"calls": []}
    assert (await client.get("/_emulator/topics")).json() == {"topics": []}
    assert (await client.get("/_emulator/stats")).json() == {"calls": 0, "failed": 0}
    assert (await ok(client, "getWebhookInfo"))["url"] == "https://bot.example/hook"
    await client.post("/_emulator/reset", json={"webhook": True})
    assert (await ok(client, "getWebhookInfo"))["url"] == ""


# --------------------------------------------------------------------------- the real process


def test_runs_as_a_module() -> None:
    port = free_port()
    env = {**os.environ, "EMULATOR_BOT_USERNAME": "cli_bot"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fakes.telegram",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                resp = httpx.get(f"http://127.0.0.1:{port}/bot{TOKEN}/getMe", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, "emulator process exited"
                assert time.monotonic() < deadline, "emulator did not start"
                time.sleep(0.1)
        assert resp.json()["result"]["username"] == "cli_bot"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
