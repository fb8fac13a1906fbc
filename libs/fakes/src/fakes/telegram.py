"""Telegram Bot API emulator: a real HTTP server standing in for api.telegram.org.

Owns the fake side of the Telegram integration and nothing else:

* the Bot API wire protocol: ``GET``/``POST /bot{token}/{method}`` with parameters as a JSON body,
  a form body (urlencoded or multipart) or a query string, answering with Telegram's envelope
  ``{"ok": true, "result": ...}`` / ``{"ok": false, "error_code": ..., "description": ...}``;
* an in-memory world: per-chat message ids, forum topics, the registered webhook and a log of
  every successful call;
* webhook delivery: updates injected by tests are POSTed with httpx to the URL registered with
  ``setWebhook``, carrying ``X-Telegram-Bot-Api-Secret-Token`` like the real platform;
* a control API under ``/_emulator`` (no token) for tests: call log, topics, stored messages,
  fault injection (429 with ``retry_after``, 5xx), update injection, reset;
* Telegram Stars payments: ``createInvoiceLink`` / ``sendInvoice`` (currency ``XTR``, exactly one
  price), ``answerPreCheckoutQuery`` (accepted only within ``pre_checkout_timeout``, 10 s as on
  the platform), ``refundStarPayment`` (a charge of this emulator, by its payer, once) and
  ``getStarTransactions``; ``POST /_emulator/stars/pay`` makes a user pay an invoice: the
  ``pre_checkout_query`` goes to the webhook, and when the bot answers yes in time the
  ``successful_payment`` message follows (a refund sends ``refunded_payment``). The error
  descriptions of these methods copy the platform's style (``CHARGE_ALREADY_REFUNDED`` is the
  real one; the others are not documented and are this emulator's guess).
* the shop bot's calls: inline keyboards (checked as Telegram checks them), ``editMessageText`` /
  ``editMessageReplyMarkup`` (400 "message is not modified" when nothing changes; an edit
  without ``reply_markup`` drops the keyboard), ``deleteMessage``, ``sendPhoto`` (a multipart
  upload, recorded by size and SHA-256, or a known ``file_id`` / URL), ``answerCallbackQuery``
  (once per query), ``pinChatMessage`` (400 "message to pin not found" for an unknown message;
  ``GET /_emulator/pins?chat_id=`` lists the pins), ``setMyCommands`` / ``getMyCommands`` per
  scope and language;
  ``POST /_emulator/press`` presses a button as a user would (the ``callback_query`` goes to the
  webhook) and ``POST /_emulator/users/{id}/block`` makes a user block the bot: writes into
  that chat are 403 "Forbidden: bot was blocked by the user" until the user writes again.
* files (``fakes.telegram_files``): ``getFile`` and the download URL for files users send
  (stored with ``POST /_emulator/files``), the bot's ``sendDocument``, upload limits.

Chats: ids listed in ``EMULATOR_FORUM_CHAT_IDS`` are forum supergroups; any other negative id is
a plain (non-forum) group - ``supergroup`` for ``-100...`` ids, ``group`` otherwise, as on the
real platform; positive ids are private chats. Any chat id is accepted. Message ids increase per
chat; a forum topic's ``message_thread_id`` is the id of its "topic created" service message and
id 1 is reserved for the General topic of a forum, as on the real platform.

Run it: ``python -m fakes.telegram --host 127.0.0.1 --port 8081``.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import hashlib
import itertools
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http import HTTPStatus
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fakes import telegram_files

__all__ = ["EmulatorConfig", "TelegramEmulator", "create_app", "main"]

log = logging.getLogger("fakes.telegram")

DEFAULT_TOKEN = "123456:TEST-TOKEN"
DEFAULT_BOT_USERNAME = "vpn_support_bot"
DEFAULT_FORUM_CHAT_IDS: tuple[int, ...] = (-1001000000001,)

SECRET_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
MAX_TEXT_LENGTH = 4096
MAX_TOPIC_NAME_LENGTH = 128
# The only icon colours createForumTopic accepts (Bot API docs).
TOPIC_ICON_COLORS = frozenset({7322096, 16766590, 13338331, 9367192, 16749490, 16478047})
DEFAULT_TOPIC_ICON_COLOR = 7322096
PARSE_MODES = {"html": "HTML", "markdown": "Markdown", "markdownv2": "MarkdownV2"}
SUPERGROUP_ID_LIMIT = -1_000_000_000_000  # "-100..." ids belong to supergroups/channels
GENERAL_TOPIC_ID = 1
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# Telegram Stars (Bot API "Payments"): title 1-32 characters, description 1-255, payload 1-128
# bytes, one price in XTR, a subscription period of exactly 30 days at most 10000 Stars.
STARS_CURRENCY = "XTR"
MAX_INVOICE_TITLE = 32
MAX_INVOICE_DESCRIPTION = 255
MAX_INVOICE_PAYLOAD_BYTES = 128
STARS_SUBSCRIPTION_PERIOD = 2592000
MAX_STARS_SUBSCRIPTION_PRICE = 10000
QUERY_TOO_OLD = "query is too old and response timeout expired or query ID is invalid"
# No deadline is documented; answers later than roughly 10-15 s are refused (adapters-wave2 §7).
CALLBACK_QUERY_TTL = 15.0
# The shop bot's world: inline keyboards, callback queries, edits, photos, commands, blocks.
NOT_MODIFIED = ("message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message")
BLOCKED_BY_USER = "Forbidden: bot was blocked by the user"
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64
MAX_CALLBACK_ANSWER_LENGTH = 200
BOT_COMMAND_RE = re.compile(r"^[a-z0-9_]{1,32}$")
MAX_COMMANDS = 100
# Methods that write into a chat: a private chat whose user blocked the bot refuses them (403).
CHAT_WRITES = frozenset(m.lower() for m in (
    "sendMessage", "sendPhoto", "sendInvoice", "sendDocument", "sendChatAction",
    "editMessageText", "editMessageReplyMarkup", "editMessageCaption", "forwardMessage",
    "copyMessage"))


# --------------------------------------------------------------------------- configuration


def _parse_chat_ids(raw: str) -> frozenset[int]:
    return frozenset(int(part) for part in raw.replace(" ", "").split(",") if part)


@dataclass(frozen=True)
class EmulatorConfig:
    """Static settings of one emulator instance."""

    token: str = DEFAULT_TOKEN
    bot_username: str = DEFAULT_BOT_USERNAME
    forum_chat_ids: frozenset[int] = frozenset(DEFAULT_FORUM_CHAT_IDS)
    bot_first_name: str = "VPN Support"
    webhook_timeout: float = 10.0
    # How long the platform waits for answerPreCheckoutQuery (10 s on Telegram).
    pre_checkout_timeout: float = 10.0

    @property
    def bot_id(self) -> int:
        prefix = self.token.split(":", 1)[0]
        return int(prefix) if prefix.isdigit() else 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EmulatorConfig:
        env = os.environ if env is None else env
        forum_raw = env.get("EMULATOR_FORUM_CHAT_IDS")
        return cls(
            token=env.get("TELEGRAM_BOT_TOKEN") or DEFAULT_TOKEN,
            bot_username=env.get("EMULATOR_BOT_USERNAME") or DEFAULT_BOT_USERNAME,
            forum_chat_ids=(
                _parse_chat_ids(forum_raw)
                if forum_raw is not None
                else frozenset(DEFAULT_FORUM_CHAT_IDS)
            ),
        )


# --------------------------------------------------------------------------- errors & params


class BotApiError(Exception):
    """A Bot API error answer: HTTP status = error_code, Telegram-style description."""

    def __init__(
        self, status: int, description: str, parameters: dict[str, Any] | None = None
    ) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ok": False,
            "error_code": self.status,
            "description": self.description,
        }
        if self.parameters is not None:
            out["parameters"] = self.parameters
        return out


def bad_request(reason: str) -> BotApiError:
    return BotApiError(400, f"Bad Request: {reason}")


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"true", "1", "yes", "on"}:
            return True
        if lowered in {"false", "0", "no", "off", ""}:
            return False
    return None


class Params:
    """Method parameters as received, plus the coerced values the handlers read.

    Form and query parameters are strings (objects arrive JSON-serialised, as the Bot API
    allows); reading a parameter through a typed getter coerces it and the coerced value is what
    ends up in the call log.
    """

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = dict(raw)
        self.clean: dict[str, Any] = dict(raw)

    def _get(self, name: str) -> Any:
        value = self.raw.get(name)
        return None if value is None else value

    def get_int(self, name: str, *, required: bool = False) -> int | None:
        value = self._get(name)
        if value is None or value == "":
            if required:
                raise bad_request(f"{name} is empty")
            return None
        number = _as_int(value)
        if number is None:
            raise bad_request(f"invalid {name} specified")
        self.clean[name] = number
        return number

    def get_chat_id(self) -> int:
        value = self._get("chat_id")
        if value is None or value == "":
            raise bad_request("chat_id is empty")
        number = _as_int(value)
        if number is None:  # "@username" chats are unknown to the emulator
            raise bad_request("chat not found")
        self.clean["chat_id"] = number
        return number

    def get_str(self, name: str) -> str | None:
        value = self._get(name)
        if value is None:
            return None
        if isinstance(value, (dict, list)):
            raise bad_request(f"invalid {name} specified")
        text = value if isinstance(value, str) else json.dumps(value)
        self.clean[name] = text
        return text

    def get_bool(self, name: str) -> bool | None:
        value = self._get(name)
        if value is None:
            return None
        flag = _as_bool(value)
        if flag is None:
            raise bad_request(f"invalid {name} specified")
        self.clean[name] = flag
        return flag

    def _get_json(self, name: str, kind: type, what: str) -> Any:
        value = self._get(name)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise bad_request(f"can't parse {what} JSON object") from None
        if not isinstance(value, kind):
            raise bad_request(f"can't parse {what} JSON object")
        self.clean[name] = value
        return value

    def get_obj(self, name: str) -> dict[str, Any] | None:
        return self._get_json(name, dict, name.replace("_", " "))

    def get_list(self, name: str) -> list[Any] | None:
        return self._get_json(name, list, name.replace("_", " "))


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


# HTML parse mode (Bot API "Formatting options"): these tags only, entities &lt; &gt; &amp;
# &quot; and numeric ones; an unknown tag, a bare "<", an unknown entity or unbalanced tags is
# a 400 "can't parse entities", as on the real platform.
HTML_TAGS = {"b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline",
             "ins": "underline", "s": "strikethrough", "strike": "strikethrough",
             "del": "strikethrough", "tg-spoiler": "spoiler", "span": "spoiler",
             "a": "text_link", "code": "code", "pre": "pre", "blockquote": "blockquote",
             "tg-emoji": "custom_emoji"}
HTML_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_HTML_TOKEN = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)([^<>]*)>|&(#x[0-9A-Fa-f]+|#[0-9]+|"
                         r"[A-Za-z]+);|<")
_HREF = re.compile(r"""\shref\s*=\s*(?:"([^"]*)"|'([^']*)'|(\S+))""")


def parse_html(text: str) -> tuple[str, list[dict[str, Any]]]:
    """(plain text, entities with UTF-16 offsets) of an HTML-formatted message, or 400."""
    out: list[str] = []
    entities: list[dict[str, Any]] = []
    stack: list[tuple[str, int, dict[str, Any]]] = []
    offset = 0  # UTF-16 code units written so far
    pos = 0

    def fail(why: str) -> BotApiError:
        byte = len(text[:pos].encode())
        return bad_request(f"can't parse entities: {why} at byte offset {byte}")

    def emit(chunk: str) -> None:
        nonlocal offset
        out.append(chunk)
        offset += _utf16_len(chunk)

    for match in _HTML_TOKEN.finditer(text):
        emit(text[pos:match.start()])
        pos = match.start()
        closing, tag, attrs, entity = match.group(1), match.group(2), match.group(3), match.group(4)
        if entity is not None:
            if entity.startswith("#"):
                code = int(entity[2:], 16) if entity[1] in "xX" else int(entity[1:])
                if not 0 < code < 0x110000 or 0xD800 <= code <= 0xDFFF:
                    raise fail("invalid numeric HTML entity")
                emit(chr(code))
            elif entity in HTML_ENTITIES:
                emit(HTML_ENTITIES[entity])
            else:
                raise fail(f'unsupported HTML entity "&{entity};"')
        elif tag is None:
            raise fail('unsupported start tag ""')  # a bare "<"
        else:
            tag = tag.lower()
            if tag not in HTML_TAGS:
                raise fail(f'unsupported {"end" if closing else "start"} tag "{tag}"')
            if not closing:
                extra: dict[str, Any] = {}
                if tag == "a":
                    href = _HREF.search(attrs)
                    if href is None:
                        raise fail('no "href" attribute for tag "a"')
                    extra["url"] = next(g for g in href.groups() if g is not None)
                stack.append((tag, offset, extra))
            else:
                if not stack:
                    raise fail(f'unexpected end tag "{tag}"')
                open_tag, start, extra = stack.pop()
                if open_tag != tag:
                    raise fail(f'unmatched end tag "{tag}", expected "</{open_tag}>"')
                if offset > start:
                    entities.append({"type": HTML_TAGS[tag], "offset": start,
                                     "length": offset - start, **extra})
        pos = match.end()
    emit(text[pos:])
    if stack:
        raise fail(f'can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


# --------------------------------------------------------------------------- state


@dataclass
class Topic:
    chat_id: int
    message_thread_id: int
    name: str
    icon_color: int
    icon_custom_emoji_id: str | None = None
    closed: bool = False

    def public(self) -> dict[str, Any]:
        return {
            "chat_id": self.chat_id,
            "message_thread_id": self.message_thread_id,
            "name": self.name,
            "closed": self.closed,
        }


@dataclass
class CallRecord:
    seq: int
    method: str
    params: dict[str, Any]
    result: Any
    time: float

    def public(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "method": self.method,
            "params": self.params,
            "result": self.result,
            "time": self.time,
        }


@dataclass
class Fault:
    id: int
    status: int
    retry_after: int
    methods: frozenset[str] | None  # lower-cased method names; None = every method
    remaining: int | None = None
    until: float | None = None  # time.monotonic() deadline
    description: str | None = None

    def active(self, now: float) -> bool:
        if self.remaining is not None:
            return self.remaining > 0
        return self.until is not None and now < self.until

    def matches(self, method: str) -> bool:
        return self.methods is None or method.lower() in self.methods

    def error(self) -> BotApiError:
        if self.status == 429:
            return BotApiError(
                429,
                self.description or f"Too Many Requests: retry after {self.retry_after}",
                {"retry_after": self.retry_after},
            )
        try:
            phrase = HTTPStatus(self.status).phrase
        except ValueError:
            phrase = "Error"
        return BotApiError(self.status, self.description or phrase)

    def public(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "retry_after": self.retry_after,
            "methods": sorted(self.methods) if self.methods is not None else None,
            "remaining": self.remaining,
            "seconds_left": max(0.0, self.until - now) if self.until is not None else None,
        }


@dataclass
class Webhook:
    url: str = ""
    secret_token: str | None = None
    allowed_updates: list[str] | None = None
    max_connections: int = 40
    last_error_date: int | None = None
    last_error_message: str | None = None


@dataclass
class PreCheckout:
    """A pre_checkout_query sent to the bot, and its answer once given."""

    id: str
    invoice_key: str
    user: dict[str, Any]
    total_amount: int
    currency: str
    payload: str
    sent_at: float  # time.monotonic()
    deadline: float
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    ok: bool | None = None
    error_message: str | None = None
    answered_after: float | None = None

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "from_id": self.user["id"], "total_amount": self.total_amount,
                "currency": self.currency, "invoice_payload": self.payload,
                "answered": self.ok is not None, "ok": self.ok,
                "error_message": self.error_message, "answered_after": self.answered_after}


@dataclass
class StarCharge:
    """A Stars payment the emulator took (its id is the ``telegram_payment_charge_id``)."""

    id: str
    user: dict[str, Any]
    total_amount: int
    payload: str
    date: int
    refunded_at: int | None = None

    def public(self) -> dict[str, Any]:
        return {"telegram_payment_charge_id": self.id, "user_id": self.user["id"],
                "total_amount": self.total_amount, "invoice_payload": self.payload,
                "date": self.date, "refunded": self.refunded_at is not None}


@dataclass
class CallbackQuery:
    """A callback_query sent to the bot (a user pressed an inline button), and its answer."""

    id: str
    user: dict[str, Any]
    chat_id: int
    message_id: int
    data: str
    sent_at: float
    answered: bool = False
    text: str | None = None
    show_alert: bool = False
    url: str | None = None
    answered_at: float | None = None  # time.monotonic()

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "from_id": self.user["id"], "chat_id": self.chat_id,
                "message_id": self.message_id, "data": self.data, "answered": self.answered,
                "text": self.text, "show_alert": self.show_alert, "url": self.url,
                "answered_after": None if self.answered_at is None
                else round(self.answered_at - self.sent_at, 4)}


@dataclass
class KnownUser:
    first_name: str
    last_name: str | None = None
    username: str | None = None


@dataclass
class EmulatorState:
    """Everything one emulator instance remembers; reset() forgets it."""

    calls: list[CallRecord] = field(default_factory=list)
    seq: int = 0
    failed: int = 0
    topics: dict[int, dict[int, Topic]] = field(default_factory=dict)
    messages: dict[int, dict[int, dict[str, Any]]] = field(default_factory=dict)
    last_message_id: dict[int, int] = field(default_factory=dict)
    chat_types: dict[int, str] = field(default_factory=dict)
    users: dict[int, KnownUser] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    fault_ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    last_update_id: int = 0
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    webhook: Webhook = field(default_factory=Webhook)
    # Stars: invoices by link slug (createInvoiceLink) or "<chat>:<message>" (sendInvoice),
    # pre-checkout queries by id, charges by telegram_payment_charge_id.
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    pre_checkouts: dict[str, PreCheckout] = field(default_factory=dict)
    charges: dict[str, StarCharge] = field(default_factory=dict)
    # Updates a call makes the platform send (a refund's refunded_payment), sent after it.
    outbound: list[dict[str, Any]] = field(default_factory=list)
    # Callback queries sent to the bot (a button pressed), by id; their answers once given.
    callback_queries: dict[str, CallbackQuery] = field(default_factory=dict)
    # setMyCommands: the lists by (scope type, language code).
    commands: dict[tuple[str, str], list[dict[str, str]]] = field(default_factory=dict)
    # Users who blocked the bot (private chat ids): writes to them are 403 until they write.
    blocked: set[int] = field(default_factory=set)
    deleted: list[dict[str, int]] = field(default_factory=list)
    # pinChatMessage: the pinned message ids per chat, the newest last.
    pinned: dict[int, list[int]] = field(default_factory=dict)
    photos: dict[str, dict[str, Any]] = field(default_factory=dict)  # sent photos by file_id
    files: dict[str, Any] = field(default_factory=dict)  # users' files (fakes.telegram_files)


Handler = Callable[["TelegramEmulator", Params], Any]


class TelegramEmulator:
    """The emulated platform: Bot API methods, update building and fault injection."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.state = EmulatorState()
        # Handlers never await while holding the lock, so one asyncio.Lock serialises every
        # read-modify-write of the state (fault budgets, counters, topics) without deadlocks.
        self.lock = asyncio.Lock()

    # ----------------------------------------------------------------- world helpers

    def bot_user(self) -> dict[str, Any]:
        return {
            "id": self.config.bot_id,
            "is_bot": True,
            "first_name": self.config.bot_first_name,
            "username": self.config.bot_username,
        }

    def is_forum(self, chat_id: int) -> bool:
        return chat_id in self.config.forum_chat_ids

    def chat_type(self, chat_id: int) -> str:
        if chat_id in self.state.chat_types:
            return self.state.chat_types[chat_id]
        if self.is_forum(chat_id) or chat_id <= SUPERGROUP_ID_LIMIT:
            return "supergroup"
        return "group" if chat_id < 0 else "private"

    def chat(self, chat_id: int) -> dict[str, Any]:
        kind = self.chat_type(chat_id)
        out: dict[str, Any] = {"id": chat_id}
        if kind == "private":
            user = self.state.users.get(chat_id)
            out["first_name"] = user.first_name if user else f"User {chat_id}"
            if user and user.last_name:
                out["last_name"] = user.last_name
            if user and user.username:
                out["username"] = user.username
        else:
            out["title"] = f"Forum {chat_id}" if self.is_forum(chat_id) else f"Group {chat_id}"
            if self.is_forum(chat_id):
                out["is_forum"] = True
        out["type"] = kind
        return out

    def next_message_id(self, chat_id: int) -> int:
        start = GENERAL_TOPIC_ID if self.is_forum(chat_id) else 0
        value = max(self.state.last_message_id.get(chat_id, start), start) + 1
        self.state.last_message_id[chat_id] = value
        return value

    def store_message(self, chat_id: int, message: dict[str, Any]) -> None:
        message_id = message["message_id"]
        self.state.messages.setdefault(chat_id, {})[message_id] = message
        if message_id > self.state.last_message_id.get(chat_id, 0):
            self.state.last_message_id[chat_id] = message_id

    def find_message(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        return self.state.messages.get(chat_id, {}).get(message_id)

    def topic(self, chat_id: int, thread_id: int) -> Topic:
        found = self.state.topics.get(chat_id, {}).get(thread_id)
        if found is None:
            raise bad_request("message thread not found")
        return found

    def forum_chat_id(self, params: Params) -> int:
        chat_id = params.get_chat_id()
        if not self.is_forum(chat_id):
            raise bad_request("the chat is not a forum")
        return chat_id

    @staticmethod
    def quoted(message: dict[str, Any]) -> dict[str, Any]:
        """A stored message as it appears inside ``reply_to_message`` (one level deep)."""
        out = copy.deepcopy(message)
        out.pop("reply_to_message", None)
        return out

    def build_message(
        self,
        chat_id: int,
        sender: dict[str, Any],
        text: str,
        *,
        thread_id: int | None,
        reply_to: dict[str, Any] | None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        forum = self.is_forum(chat_id)
        if forum and thread_id is None and reply_to and reply_to.get("is_topic_message"):
            thread_id = reply_to.get("message_thread_id")  # replies stay in the topic
        message: dict[str, Any] = {"message_id": self.next_message_id(chat_id)}
        if thread_id is not None:
            message["message_thread_id"] = thread_id
        message["from"] = sender
        message["chat"] = self.chat(chat_id)
        message["date"] = int(time.time())
        if forum and thread_id is not None:
            message["is_topic_message"] = True
        if reply_to is not None:
            message["reply_to_message"] = self.quoted(reply_to)
        message["text"] = text
        if extra:
            message.update(extra)
        self.store_message(chat_id, message)
        return message

    # ----------------------------------------------------------------- Bot API methods

    def get_me(self, params: Params) -> dict[str, Any]:
        return {
            **self.bot_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def set_webhook(self, params: Params) -> bool:
        url = params.get_str("url") or ""
        secret = params.get_str("secret_token")
        allowed = params.get_list("allowed_updates")
        params.get_bool("drop_pending_updates")
        max_connections = params.get_int("max_connections")
        if url:
            parts = urlsplit(url)
            if parts.scheme not in {"http", "https"} or not parts.hostname:
                raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        if secret is not None and not SECRET_TOKEN_RE.fullmatch(secret):
            raise bad_request("secret token contains unallowed characters")
        if max_connections is not None and not 1 <= max_connections <= 100:
            raise bad_request("bad webhook: max_connections must be between 1 and 100")
        if allowed is not None and not all(isinstance(item, str) for item in allowed):
            raise bad_request("can't parse allowed updates JSON object")
        if not url:
            self.state.webhook = Webhook()
            return True
        self.state.webhook = Webhook(
            url=url,
            secret_token=secret,
            allowed_updates=allowed if allowed else None,
            max_connections=max_connections or 40,
        )
        return True

    def delete_webhook(self, params: Params) -> bool:
        params.get_bool("drop_pending_updates")
        self.state.webhook = Webhook()
        return True

    def get_webhook_info(self, params: Params) -> dict[str, Any]:
        hook = self.state.webhook
        info: dict[str, Any] = {
            "url": hook.url,
            "has_custom_certificate": False,
            "pending_update_count": 0,
        }
        if hook.url:
            info["max_connections"] = hook.max_connections
            if hook.allowed_updates:
                info["allowed_updates"] = list(hook.allowed_updates)
            if hook.last_error_date is not None:
                info["last_error_date"] = hook.last_error_date
                info["last_error_message"] = hook.last_error_message
        return info

    def send_message(self, params: Params) -> dict[str, Any]:
        chat_id = params.get_chat_id()
        text = params.get_str("text")
        parse_mode = params.get_str("parse_mode")
        if parse_mode and parse_mode.lower() not in PARSE_MODES:
            raise bad_request("unsupported parse_mode")
        entities: list[dict[str, Any]] = []
        if text is not None and parse_mode and parse_mode.lower() == "html":
            text, entities = parse_html(text)
        if text is None or not text.strip():
            raise bad_request("message text is empty")
        if _utf16_len(text) > MAX_TEXT_LENGTH:
            raise bad_request("message is too long")
        thread_id = params.get_int("message_thread_id")
        params.get_obj("link_preview_options")
        params.get_bool("disable_notification")
        params.get_bool("protect_content")
        reply_markup = params.get_obj("reply_markup")

        reply_parameters = params.get_obj("reply_parameters")
        allow_without_reply = bool(params.get_bool("allow_sending_without_reply"))
        reply_to_id = params.get_int("reply_to_message_id")
        if reply_parameters is not None:
            reply_to_id = _as_int(reply_parameters.get("message_id"))
            if reply_to_id is None:
                raise bad_request("invalid reply parameters specified")
            flag = _as_bool(reply_parameters.get("allow_sending_without_reply", False))
            allow_without_reply = bool(flag)

        if self.is_forum(chat_id) and thread_id is not None:
            self.topic(chat_id, thread_id)  # must exist; closed topics are accepted
        reply_to: dict[str, Any] | None = None
        if reply_to_id is not None:
            reply_to = self.find_message(chat_id, reply_to_id)
            if reply_to is None and not allow_without_reply:
                raise bad_request("message to be replied not found")

        extra: dict[str, Any] = {}
        if entities:
            extra["entities"] = entities
        if reply_markup is not None and "inline_keyboard" in reply_markup:
            extra["reply_markup"] = self.check_keyboard(reply_markup)
        return self.build_message(
            chat_id,
            self.bot_user(),
            text,
            thread_id=thread_id if self.is_forum(chat_id) else None,
            reply_to=reply_to,
            extra=extra,
        )

    def create_forum_topic(self, params: Params) -> dict[str, Any]:
        chat_id = self.forum_chat_id(params)
        name = params.get_str("name")
        if name is None or not name.strip():
            raise bad_request("topic name is empty")
        if len(name) > MAX_TOPIC_NAME_LENGTH:
            raise bad_request("topic name is too long")
        icon_color = params.get_int("icon_color")
        if icon_color is None:
            icon_color = DEFAULT_TOPIC_ICON_COLOR
        elif icon_color not in TOPIC_ICON_COLORS:
            raise bad_request("invalid icon_color specified")
        emoji = params.get_str("icon_custom_emoji_id") or None

        thread_id = self.next_message_id(chat_id)
        topic = Topic(chat_id, thread_id, name, icon_color, emoji)
        self.state.topics.setdefault(chat_id, {})[thread_id] = topic
        result: dict[str, Any] = {
            "message_thread_id": thread_id,
            "name": name,
            "icon_color": icon_color,
        }
        if emoji:
            result["icon_custom_emoji_id"] = emoji
        # The "topic created" service message whose id is the thread id (as on Telegram).
        self.store_message(
            chat_id,
            {
                "message_id": thread_id,
                "message_thread_id": thread_id,
                "from": self.bot_user(),
                "chat": self.chat(chat_id),
                "date": int(time.time()),
                "is_topic_message": True,
                "forum_topic_created": {
                    k: v for k, v in result.items() if k != "message_thread_id"
                },
            },
        )
        return result

    def _forum_topic(self, params: Params) -> Topic:
        chat_id = self.forum_chat_id(params)
        thread_id = params.get_int("message_thread_id", required=True)
        assert thread_id is not None
        return self.topic(chat_id, thread_id)

    def close_forum_topic(self, params: Params) -> bool:
        topic = self._forum_topic(params)
        if topic.closed:
            raise bad_request("TOPIC_NOT_MODIFIED")
        topic.closed = True
        return True

    def reopen_forum_topic(self, params: Params) -> bool:
        topic = self._forum_topic(params)
        if not topic.closed:
            raise bad_request("TOPIC_NOT_MODIFIED")
        topic.closed = False
        return True

    def edit_forum_topic(self, params: Params) -> bool:
        topic = self._forum_topic(params)
        name = params.get_str("name")
        emoji = params.get_str("icon_custom_emoji_id")
        if name is not None:
            if not name.strip():
                raise bad_request("topic name is empty")
            if len(name) > MAX_TOPIC_NAME_LENGTH:
                raise bad_request("topic name is too long")
        new_name = name if name is not None else topic.name
        new_emoji = (emoji or None) if emoji is not None else topic.icon_custom_emoji_id
        if new_name == topic.name and new_emoji == topic.icon_custom_emoji_id:
            raise bad_request("TOPIC_NOT_MODIFIED")
        topic.name = new_name
        topic.icon_custom_emoji_id = new_emoji
        return True

    def get_chat(self, params: Params) -> dict[str, Any]:
        chat_id = params.get_chat_id()
        info = self.chat(chat_id)
        if info["type"] in {"group", "supergroup"}:
            info["is_forum"] = self.is_forum(chat_id)
        info["accent_color_id"] = 0
        info["max_reaction_count"] = 11
        return info

    # ----------------------------------------------------------------- Telegram Stars

    def _stars_invoice(self, params: Params) -> dict[str, Any]:
        """The invoice fields createInvoiceLink and sendInvoice share, checked as for XTR."""
        title = params.get_str("title")
        description = params.get_str("description")
        payload = params.get_str("payload")
        currency = params.get_str("currency")
        provider_token = params.get_str("provider_token")
        prices = params.get_list("prices")
        period = params.get_int("subscription_period")
        if not title or len(title) > MAX_INVOICE_TITLE:
            raise bad_request("TITLE_INVALID" if title else "title is empty")
        if not description or len(description) > MAX_INVOICE_DESCRIPTION:
            raise bad_request("DESCRIPTION_INVALID" if description else "description is empty")
        if not payload or len(payload.encode()) > MAX_INVOICE_PAYLOAD_BYTES:
            raise bad_request("INVOICE_PAYLOAD_INVALID" if payload else "payload is empty")
        if not currency:
            raise bad_request("currency is empty")
        if currency != STARS_CURRENCY:
            # Only Stars are emulated: a provider_token payment needs a payment provider.
            raise bad_request("PAYMENT_PROVIDER_INVALID")
        if provider_token:
            raise bad_request("PAYMENT_PROVIDER_INVALID")
        if prices is None:
            raise bad_request("prices is empty")
        if len(prices) != 1:
            raise bad_request("STARS_INVOICE_INVALID")  # exactly one price for XTR
        price = prices[0]
        amount = _as_int(price.get("amount")) if isinstance(price, dict) else None
        label = price.get("label") if isinstance(price, dict) else None
        if not isinstance(label, str) or not label or amount is None or amount <= 0:
            raise bad_request("CURRENCY_TOTAL_AMOUNT_INVALID")
        if period is not None and (period != STARS_SUBSCRIPTION_PERIOD
                                   or amount > MAX_STARS_SUBSCRIPTION_PRICE):
            raise bad_request("SUBSCRIPTION_PERIOD_INVALID")
        for name in ("need_name", "need_phone_number", "need_email", "need_shipping_address",
                     "is_flexible", "send_phone_number_to_provider",
                     "send_email_to_provider"):
            params.get_bool(name)  # accepted, ignored for XTR
        return {"title": title, "description": description, "payload": payload,
                "currency": currency, "total_amount": amount, "label": label,
                "subscription_period": period}

    def create_invoice_link(self, params: Params) -> str:
        invoice = self._stars_invoice(params)
        slug = secrets.token_urlsafe(12)
        self.state.invoices[slug] = invoice
        return f"https://t.me/${slug}"

    def send_invoice(self, params: Params) -> dict[str, Any]:
        chat_id = params.get_chat_id()
        invoice = self._stars_invoice(params)
        if invoice["subscription_period"] is not None:
            raise bad_request("subscription_period is supported only in createInvoiceLink")
        thread_id = params.get_int("message_thread_id")
        params.get_str("start_parameter")
        reply_markup = params.get_obj("reply_markup")
        if reply_markup is not None:
            rows = reply_markup.get("inline_keyboard")
            first = rows[0][0] if isinstance(rows, list) and rows and isinstance(
                rows[0], list) and rows[0] else None
            if not isinstance(first, dict) or first.get("pay") is not True:
                raise bad_request("first button in the inline keyboard must be a Pay button")
        if self.is_forum(chat_id) and thread_id is not None:
            self.topic(chat_id, thread_id)
        message: dict[str, Any] = {"message_id": self.next_message_id(chat_id)}
        if thread_id is not None and self.is_forum(chat_id):
            message["message_thread_id"] = thread_id
            message["is_topic_message"] = True
        message["from"] = self.bot_user()
        message["chat"] = self.chat(chat_id)
        message["date"] = int(time.time())
        message["invoice"] = {"title": invoice["title"], "description": invoice["description"],
                              "start_parameter": params.clean.get("start_parameter") or "",
                              "currency": invoice["currency"],
                              "total_amount": invoice["total_amount"]}
        if reply_markup is not None:
            message["reply_markup"] = reply_markup
        self.store_message(chat_id, message)
        self.state.invoices[f"{chat_id}:{message['message_id']}"] = invoice
        return message

    def answer_pre_checkout_query(self, params: Params) -> bool:
        query_id = params.get_str("pre_checkout_query_id")
        ok = params.get_bool("ok")
        error_message = params.get_str("error_message")
        if not query_id:
            raise bad_request("pre_checkout_query_id is empty")
        if ok is None:
            raise bad_request("ok is empty")
        if not ok and not error_message:
            raise bad_request("error_message is empty")
        query = self.state.pre_checkouts.get(query_id)
        now = time.monotonic()
        if query is None or query.ok is not None or now > query.deadline:
            raise bad_request(QUERY_TOO_OLD)
        query.ok = ok
        query.error_message = None if ok else error_message
        query.answered_after = round(now - query.sent_at, 3)
        query.answered.set()
        return True

    def refund_star_payment(self, params: Params) -> bool:
        user_id = params.get_int("user_id", required=True)
        charge_id = params.get_str("telegram_payment_charge_id")
        if not charge_id:
            raise bad_request("telegram_payment_charge_id is empty")
        charge = self.state.charges.get(charge_id)
        if charge is None or charge.user["id"] != user_id:
            raise bad_request("CHARGE_NOT_FOUND")
        if charge.refunded_at is not None:
            raise bad_request("CHARGE_ALREADY_REFUNDED")
        charge.refunded_at = int(time.time())
        # The payer's chat gets the refunded_payment service message (sent after this call).
        message = {"message_id": self.next_message_id(user_id), "from": charge.user,
                   "chat": self.chat(user_id), "date": charge.refunded_at,
                   "refunded_payment": {"currency": STARS_CURRENCY,
                                        "total_amount": charge.total_amount,
                                        "invoice_payload": charge.payload,
                                        "telegram_payment_charge_id": charge.id}}
        self.store_message(user_id, message)
        self.state.outbound.append({"update_id": self.next_update_id(), "message": message})
        return True

    def get_star_transactions(self, params: Params) -> dict[str, Any]:
        offset = params.get_int("offset") or 0
        limit = params.get_int("limit")
        limit = 100 if limit is None else limit
        if not 1 <= limit <= 100:
            raise bad_request("limit must be between 1 and 100")
        rows: list[tuple[int, dict[str, Any]]] = []
        for charge in self.state.charges.values():
            partner = {"type": "user", "user": charge.user}
            rows.append((charge.date, {"id": charge.id, "amount": charge.total_amount,
                                       "date": charge.date, "source": partner}))
            if charge.refunded_at is not None:
                rows.append((charge.refunded_at, {"id": charge.id,
                                                  "amount": charge.total_amount,
                                                  "date": charge.refunded_at,
                                                  "receiver": partner}))
        rows.sort(key=lambda r: r[0], reverse=True)  # newest first, as on the platform
        return {"transactions": [t for _, t in rows[offset:offset + limit]]}

    def start_pre_checkout(self, key: str, user: dict[str, Any], total_amount: int | None,
                           currency: str | None) -> tuple[PreCheckout, dict[str, Any]]:
        """The pre_checkout_query of a user about to pay invoice `key` (KeyError: no such
        invoice); `total_amount`/`currency` stand in for what a client would report."""
        invoice = self.state.invoices[key]
        self.remember_user(user)
        now = time.monotonic()
        query = PreCheckout(id=str(secrets.randbits(63)), invoice_key=key, user=user,
                            total_amount=invoice["total_amount"] if total_amount is None
                            else total_amount,
                            currency=currency or invoice["currency"],
                            payload=invoice["payload"], sent_at=now,
                            deadline=now + self.config.pre_checkout_timeout)
        self.state.pre_checkouts[query.id] = query
        update = {"update_id": self.next_update_id(), "pre_checkout_query": {
            "id": query.id, "from": user, "currency": query.currency,
            "total_amount": query.total_amount, "invoice_payload": query.payload}}
        return query, update

    def take_payment(self, query: PreCheckout) -> tuple[StarCharge, dict[str, Any]]:
        """The charge of an approved query and the successful_payment message update."""
        charge = StarCharge(id=f"stxEMU{secrets.token_urlsafe(24)}", user=query.user,
                            total_amount=query.total_amount, payload=query.payload,
                            date=int(time.time()))
        self.state.charges[charge.id] = charge
        chat_id = query.user["id"]
        message = {"message_id": self.next_message_id(chat_id), "from": query.user,
                   "chat": self.chat(chat_id), "date": charge.date,
                   "successful_payment": {"currency": query.currency,
                                          "total_amount": query.total_amount,
                                          "invoice_payload": query.payload,
                                          "telegram_payment_charge_id": charge.id,
                                          "provider_payment_charge_id": ""}}
        self.store_message(chat_id, message)
        return charge, {"update_id": self.next_update_id(), "message": message}

    # ----------------------------------------------------------------- shop bot: keyboards

    @staticmethod
    def check_keyboard(reply_markup: dict[str, Any] | None) -> dict[str, Any] | None:
        """An inline keyboard as Telegram checks it (None: no inline keyboard)."""
        if reply_markup is None or "inline_keyboard" not in reply_markup:
            return None
        rows = reply_markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise bad_request("can't parse inline keyboard button: InlineKeyboardButton must "
                              "be an Object")
        for row in rows:
            for button in row:
                if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                    raise bad_request("can't parse inline keyboard button: Text must be a "
                                      "String")
                if not button["text"].strip():
                    raise bad_request("BUTTON_TEXT_INVALID")
                kinds = [k for k in ("callback_data", "url", "pay", "copy_text", "web_app",
                                     "switch_inline_query", "login_url") if k in button]
                if len(kinds) != 1:
                    raise bad_request("can't parse inline keyboard button: exactly one of the "
                                      "optional fields must be used")
                data = button.get("callback_data")
                if data is not None and (not isinstance(data, str) or not data or len(
                        data.encode()) > MAX_CALLBACK_DATA_BYTES):
                    raise bad_request("BUTTON_DATA_INVALID")
                url = button.get("url")
                if url is not None and (not isinstance(url, str) or urlsplit(url).scheme not in {
                        "http", "https", "tg"}):
                    raise bad_request("BUTTON_URL_INVALID")
        return {"inline_keyboard": rows}

    def bot_message(self, params: Params) -> dict[str, Any]:
        """The bot's own message named by chat_id + message_id (for edits and deletes)."""
        if params.get_str("inline_message_id"):
            raise bad_request("MESSAGE_ID_INVALID")  # inline messages are not emulated
        chat_id = params.get_chat_id()
        message_id = params.get_int("message_id", required=True)
        assert message_id is not None
        message = self.find_message(chat_id, message_id)
        if message is None:
            raise bad_request("message to edit not found")
        if not message.get("from", {}).get("is_bot") or message["from"]["id"] != \
                self.config.bot_id:
            raise bad_request("message can't be edited")
        return message

    def edit_message_text(self, params: Params) -> dict[str, Any]:
        message = self.bot_message(params)
        text = params.get_str("text")
        parse_mode = params.get_str("parse_mode")
        if parse_mode and parse_mode.lower() not in PARSE_MODES:
            raise bad_request("unsupported parse_mode")
        entities: list[dict[str, Any]] = []
        if text is not None and parse_mode and parse_mode.lower() == "html":
            text, entities = parse_html(text)
        if text is None or not text.strip():
            raise bad_request("message text is empty")
        if _utf16_len(text) > MAX_TEXT_LENGTH:
            raise bad_request("MESSAGE_TOO_LONG")
        if "text" not in message:
            raise bad_request("there is no text in the message to edit")
        params.get_obj("link_preview_options")
        # Without reply_markup the edited message loses its inline keyboard, as on Telegram.
        markup = self.check_keyboard(params.get_obj("reply_markup"))
        if (text == message["text"] and entities == message.get("entities", [])
                and markup == message.get("reply_markup")):
            raise bad_request(NOT_MODIFIED)
        message["text"] = text
        message.pop("entities", None)
        if entities:
            message["entities"] = entities
        message.pop("reply_markup", None)
        if markup is not None:
            message["reply_markup"] = markup
        message["edit_date"] = int(time.time())
        return copy.deepcopy(message)

    def edit_message_reply_markup(self, params: Params) -> dict[str, Any]:
        message = self.bot_message(params)
        markup = self.check_keyboard(params.get_obj("reply_markup"))
        if markup == message.get("reply_markup"):
            raise bad_request(NOT_MODIFIED)
        message.pop("reply_markup", None)
        if markup is not None:
            message["reply_markup"] = markup
        message["edit_date"] = int(time.time())
        return copy.deepcopy(message)

    def delete_message(self, params: Params) -> bool:
        chat_id = params.get_chat_id()
        message_id = params.get_int("message_id", required=True)
        assert message_id is not None
        if self.state.messages.get(chat_id, {}).pop(message_id, None) is None:
            raise bad_request("message to delete not found")
        self.state.deleted.append({"chat_id": chat_id, "message_id": message_id})
        return True

    def pin_chat_message(self, params: Params) -> bool:
        """Pins a message of the chat (no thread parameter: in a forum the message's own topic
        shows it). Pinning a pinned message again succeeds, as on the platform."""
        chat_id = params.get_chat_id()
        message_id = params.get_int("message_id", required=True)
        assert message_id is not None
        params.get_bool("disable_notification")
        if self.find_message(chat_id, message_id) is None:
            raise bad_request("message to pin not found")
        pins = self.state.pinned.setdefault(chat_id, [])
        if message_id in pins:
            pins.remove(message_id)
        pins.append(message_id)
        return True

    def send_photo(self, params: Params) -> dict[str, Any]:
        chat_id = params.get_chat_id()
        photo = params.raw.get("photo")
        if photo is None or photo == "":
            raise bad_request("there is no photo in the request")
        if isinstance(photo, dict) and "size" in photo:  # a multipart upload
            if not photo["size"]:
                raise bad_request("file must be non-empty")
            if telegram_files.photo_too_big(photo):
                raise bad_request("file is too big")
            size = {"file_size": photo["size"], "width": photo.get("width", 0),
                    "height": photo.get("height", 0)}
            unique = str(photo.get("sha256", ""))[:16] or secrets.token_hex(8)
        elif isinstance(photo, str) and (photo.startswith(("http://", "https://"))
                                         or photo in self.state.photos):
            size = dict(self.state.photos.get(photo, {"file_size": 0, "width": 0,
                                                      "height": 0}))
            unique = size.pop("file_unique_id", secrets.token_hex(8))
            size.pop("file_id", None)
        else:
            raise bad_request("wrong remote file identifier specified: Wrong string length")
        caption = params.get_str("caption")
        parse_mode = params.get_str("parse_mode")
        entities: list[dict[str, Any]] = []
        if caption is not None and parse_mode and parse_mode.lower() == "html":
            caption, entities = parse_html(caption)
        if caption is not None and _utf16_len(caption) > MAX_CAPTION_LENGTH:
            raise bad_request("message caption is too long")
        markup = self.check_keyboard(params.get_obj("reply_markup"))
        file_id = f"AgAC{unique}{secrets.token_urlsafe(12)}"
        sizes = {"file_id": file_id, "file_unique_id": unique, **size}
        self.state.photos[file_id] = sizes
        extra: dict[str, Any] = {"photo": [sizes]}
        if caption:
            extra["caption"] = caption
            if entities:
                extra["caption_entities"] = entities
        if markup is not None:
            extra["reply_markup"] = markup
        return self.post_media(chat_id, params.get_int("message_thread_id"), extra)

    def post_media(self, chat_id: int, thread_id: int | None,
                   extra: dict[str, Any]) -> dict[str, Any]:
        """The bot's photo or document message (no text), stored; in the forum topic
        `thread_id` when the chat is a forum."""
        message: dict[str, Any] = {"message_id": self.next_message_id(chat_id)}
        if thread_id is not None and self.is_forum(chat_id):
            self.topic(chat_id, thread_id)
            message["message_thread_id"] = thread_id
            message["is_topic_message"] = True
        message |= {"from": self.bot_user(), "chat": self.chat(chat_id),
                    "date": int(time.time()), **extra}
        self.store_message(chat_id, message)
        return message

    def answer_callback_query(self, params: Params) -> bool:
        query_id = params.get_str("callback_query_id")
        if not query_id:
            raise bad_request("callback_query_id is empty")
        text = params.get_str("text")
        show_alert = params.get_bool("show_alert")
        url = params.get_str("url")
        params.get_int("cache_time")
        if text is not None and len(text) > MAX_CALLBACK_ANSWER_LENGTH:
            raise bad_request("MESSAGE_TOO_LONG")
        query = self.state.callback_queries.get(query_id)
        if query is None or query.answered or (
                time.monotonic() - query.sent_at > CALLBACK_QUERY_TTL):
            raise bad_request(QUERY_TOO_OLD)
        if url is not None:
            raise bad_request("URL_INVALID")  # only games may open a URL from a callback
        query.answered, query.text, query.show_alert = True, text, bool(show_alert)
        query.answered_at = time.monotonic()
        return True

    def set_my_commands(self, params: Params) -> bool:
        commands = params.get_list("commands")
        if commands is None:
            raise bad_request("commands is empty")
        if len(commands) > MAX_COMMANDS:
            raise bad_request("too many commands specified")
        clean: list[dict[str, str]] = []
        for item in commands:
            name = item.get("command") if isinstance(item, dict) else None
            text = item.get("description") if isinstance(item, dict) else None
            if not isinstance(name, str) or not BOT_COMMAND_RE.fullmatch(name):
                raise bad_request("BOT_COMMAND_INVALID")
            if not isinstance(text, str) or not 1 <= len(text.strip()) <= 256:
                raise bad_request("command description is empty" if not text
                                  else "BOT_COMMAND_DESCRIPTION_INVALID")
            clean.append({"command": name, "description": text})
        self.state.commands[self._commands_key(params)] = clean
        return True

    def _commands_key(self, params: Params) -> tuple[str, str]:
        scope = params.get_obj("scope") or {"type": "default"}
        language = params.get_str("language_code") or ""
        if language and not re.fullmatch(r"[a-z]{2}", language):
            raise bad_request("invalid language code specified")
        return str(scope.get("type") or "default"), language

    def get_my_commands(self, params: Params) -> list[dict[str, str]]:
        return copy.deepcopy(self.state.commands.get(self._commands_key(params), []))

    def delete_my_commands(self, params: Params) -> bool:
        self.state.commands.pop(self._commands_key(params), None)
        return True

    def check_blocked(self, method: str, raw: Mapping[str, Any]) -> BotApiError | None:
        """403 for a write into the private chat of a user who blocked the bot."""
        if method.lower() not in CHAT_WRITES:
            return None
        chat_id = _as_int(raw.get("chat_id"))
        if chat_id is not None and chat_id in self.state.blocked:
            return BotApiError(403, BLOCKED_BY_USER)
        return None

    def press(self, chat_id: int, message_id: int, user: dict[str, Any],
              data: str | None, text: str | None) -> tuple[dict[str, Any] | None, str | None]:
        """A user presses a button of the bot's message: (the callback_query update, or None
        with the URL a link button opens). LookupError: no such message or button."""
        message = self.find_message(chat_id, message_id)
        if message is None or not message.get("from", {}).get("is_bot"):
            raise LookupError("no such message of the bot")
        rows = (message.get("reply_markup") or {}).get("inline_keyboard") or []
        button = next((b for row in rows for b in row
                       if (data is not None and b.get("callback_data") == data)
                       or (data is None and b.get("text") == text)), None)
        if button is None:
            raise LookupError("the message has no such button")
        if "callback_data" not in button:
            return None, button.get("url") or button.get("copy_text", {}).get("text")
        self.remember_user(user)
        query = CallbackQuery(id=str(secrets.randbits(63)), user=user, chat_id=chat_id,
                              message_id=message_id, data=button["callback_data"],
                              sent_at=time.monotonic())
        self.state.callback_queries[query.id] = query
        return {"update_id": self.next_update_id(), "callback_query": {
            "id": query.id, "from": user, "message": self.quoted(message),
            "chat_instance": str(abs(hash((chat_id, self.config.bot_id))) % 10**18),
            "data": query.data}}, None

    METHODS: dict[str, tuple[str, Handler]] = {}

    # ----------------------------------------------------------------- dispatch

    def resolve(self, method: str) -> str | None:
        """Canonical name of a Bot API method (names are case-insensitive), or None."""
        entry = self.METHODS.get(method.lower())
        return entry[0] if entry else None

    def take_fault(self, method: str) -> Fault | None:
        now = time.monotonic()
        self.state.faults = [f for f in self.state.faults if f.active(now)]
        for fault in self.state.faults:
            if fault.matches(method):
                if fault.remaining is not None:
                    fault.remaining -= 1
                return fault
        return None

    def invoke(self, method: str, raw: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """Run one call (caller holds the lock): fault injection, handler, call log."""
        name, handler = self.METHODS[method.lower()]
        fault = self.take_fault(name)
        if fault is not None:
            self.state.failed += 1
            return fault.status, fault.error().body()
        blocked = self.check_blocked(name, raw)
        if blocked is not None:
            self.state.failed += 1
            return blocked.status, blocked.body()
        params = Params(raw)
        try:
            result = handler(self, params)
        except BotApiError as exc:
            self.state.failed += 1
            return exc.status, exc.body()
        self.state.seq += 1
        self.state.calls.append(
            CallRecord(self.state.seq, name, params.clean, copy.deepcopy(result), time.time())
        )
        return 200, {"ok": True, "result": result}

    # ----------------------------------------------------------------- updates

    def remember_user(self, user: Mapping[str, Any]) -> None:
        user_id = _as_int(user.get("id"))
        if user_id is None or user.get("is_bot"):
            return
        self.state.users[user_id] = KnownUser(
            first_name=str(user.get("first_name") or f"User {user_id}"),
            last_name=user.get("last_name"),
            username=user.get("username"),
        )

    def next_update_id(self) -> int:
        self.state.last_update_id += 1
        return self.state.last_update_id

    def adopt_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """A full update given by a test: number it if needed and remember its message."""
        update = copy.deepcopy(update)
        given = _as_int(update.get("update_id"))
        if given is None:
            update.pop("update_id", None)
            update = {"update_id": self.next_update_id(), **update}
        else:
            self.state.last_update_id = max(self.state.last_update_id, given)
        message = update.get("message")
        if isinstance(message, dict) and isinstance(message.get("chat"), dict):
            chat_id = _as_int(message["chat"].get("id"))
            message_id = _as_int(message.get("message_id"))
            if chat_id is not None and message_id is not None:
                self.store_message(chat_id, copy.deepcopy(message))
            if isinstance(message.get("from"), dict):
                self.remember_user(message["from"])
        return update

    def build_update(self, spec: ShorthandUpdate) -> dict[str, Any]:
        """A realistic ``message`` update from the shorthand a test gave."""
        sender: dict[str, Any] = {
            "id": spec.from_id,
            "is_bot": False,
            "first_name": spec.from_first_name or f"User {spec.from_id}",
        }
        if spec.from_last_name:
            sender["last_name"] = spec.from_last_name
        if spec.from_username:
            sender["username"] = spec.from_username
        if spec.language_code:
            sender["language_code"] = spec.language_code
        self.remember_user(sender)
        self.state.blocked.discard(spec.from_id)  # writing to the bot means it is unblocked
        if spec.chat_type is not None:
            self.state.chat_types[spec.chat_id] = spec.chat_type

        thread_id = spec.message_thread_id
        if thread_id is not None and self.is_forum(spec.chat_id):
            # A user wrote in a topic the emulator has not seen: it exists on the platform.
            topics = self.state.topics.setdefault(spec.chat_id, {})
            if thread_id not in topics:
                topics[thread_id] = Topic(
                    spec.chat_id, thread_id, f"Topic {thread_id}", DEFAULT_TOPIC_ICON_COLOR
                )
                last = self.state.last_message_id.get(spec.chat_id, 0)
                self.state.last_message_id[spec.chat_id] = max(last, thread_id)
        reply_to = None
        if spec.reply_to_message_id is not None:
            reply_to = self.find_message(spec.chat_id, spec.reply_to_message_id)
        message = self.build_message(
            spec.chat_id, sender, spec.text, thread_id=thread_id, reply_to=reply_to
        )
        return {"update_id": self.next_update_id(), "message": copy.deepcopy(message)}

    def record_delivery(
        self, update: dict[str, Any], status_code: int | None, error: str | None
    ) -> None:
        self.state.deliveries.append(
            {
                "update_id": update.get("update_id"),
                "status_code": status_code,
                "error": error,
                "update": update,
            }
        )
        if error is not None or status_code is None or status_code >= 300:
            self.state.webhook.last_error_date = int(time.time())
            self.state.webhook.last_error_message = error or (
                f"Wrong response from the webhook: {status_code} {_phrase(status_code or 0)}"
            )


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


TelegramEmulator.METHODS = {
    name.lower(): (name, handler)
    for name, handler in {
        "getMe": TelegramEmulator.get_me,
        "setWebhook": TelegramEmulator.set_webhook,
        "deleteWebhook": TelegramEmulator.delete_webhook,
        "getWebhookInfo": TelegramEmulator.get_webhook_info,
        "sendMessage": TelegramEmulator.send_message,
        "createForumTopic": TelegramEmulator.create_forum_topic,
        "closeForumTopic": TelegramEmulator.close_forum_topic,
        "reopenForumTopic": TelegramEmulator.reopen_forum_topic,
        "editForumTopic": TelegramEmulator.edit_forum_topic,
        "getChat": TelegramEmulator.get_chat,
        "createInvoiceLink": TelegramEmulator.create_invoice_link,
        "sendInvoice": TelegramEmulator.send_invoice,
        "answerPreCheckoutQuery": TelegramEmulator.answer_pre_checkout_query,
        "refundStarPayment": TelegramEmulator.refund_star_payment,
        "getStarTransactions": TelegramEmulator.get_star_transactions,
        "editMessageText": TelegramEmulator.edit_message_text,
        "editMessageReplyMarkup": TelegramEmulator.edit_message_reply_markup,
        "deleteMessage": TelegramEmulator.delete_message,
        "pinChatMessage": TelegramEmulator.pin_chat_message,
        "sendPhoto": TelegramEmulator.send_photo,
        "sendDocument": telegram_files.send_document,
        "getFile": telegram_files.get_file,
        "answerCallbackQuery": TelegramEmulator.answer_callback_query,
        "setMyCommands": TelegramEmulator.set_my_commands,
        "getMyCommands": TelegramEmulator.get_my_commands,
        "deleteMyCommands": TelegramEmulator.delete_my_commands,
    }.items()
}


# --------------------------------------------------------------------------- control models


class FaultSpec(BaseModel):
    """Body of ``POST /_emulator/faults``."""

    model_config = ConfigDict(extra="forbid")

    status: int = Field(ge=400, le=599)
    count: int | None = Field(default=None, ge=1)
    for_seconds: float | None = Field(default=None, gt=0)
    retry_after: int = Field(default=1, ge=0)
    methods: list[str] | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _one_budget(self) -> FaultSpec:
        if self.count is not None and self.for_seconds is not None:
            raise ValueError("give either count or for_seconds, not both")
        if self.count is None and self.for_seconds is None:
            self.count = 1
        return self


class ShorthandUpdate(BaseModel):
    """Shorthand body of ``POST /_emulator/updates`` (a user writes a text message)."""

    model_config = ConfigDict(extra="forbid")

    chat_id: int
    from_id: int
    text: str
    from_username: str | None = None
    from_first_name: str | None = None
    from_last_name: str | None = None
    language_code: str | None = None
    message_thread_id: int | None = None
    reply_to_message_id: int | None = None
    chat_type: Literal["private", "group", "supergroup"] | None = None
    secret_token: str | None = None


class StarsPayment(BaseModel):
    """Body of ``POST /_emulator/stars/pay``: who pays which invoice (a link of
    createInvoiceLink, or the chat and message of sendInvoice). `total_amount` and `currency`
    replace what the client reports, to test the bot's check; `deliver: false` keeps the
    successful_payment update back (it is returned)."""

    model_config = ConfigDict(extra="forbid")

    link: str | None = None
    chat_id: int | None = None
    message_id: int | None = None
    from_id: int = Field(gt=0)
    from_first_name: str | None = None
    from_username: str | None = None
    total_amount: int | None = None
    currency: str | None = None
    deliver: bool = True


class PressButton(BaseModel):
    """Body of ``POST /_emulator/press``: who presses which button (its callback_data, or its
    text) of which of the bot's messages."""

    model_config = ConfigDict(extra="forbid")

    chat_id: int
    message_id: int
    from_id: int = Field(gt=0)
    data: str | None = None
    text: str | None = None
    from_first_name: str | None = None
    from_username: str | None = None
    language_code: str | None = None

    @model_validator(mode="after")
    def _one_button(self) -> PressButton:
        if (self.data is None) == (self.text is None):
            raise ValueError("give either data or text")
        return self


# --------------------------------------------------------------------------- HTTP layer


class ParamsError(Exception):
    pass


def _png_size(data: bytes) -> dict[str, int]:
    """A PNG's width and height from its IHDR chunk (nothing for other files)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 24:
        return {}
    return {"width": int.from_bytes(data[16:20], "big"),
            "height": int.from_bytes(data[20:24], "big")}


def _parse_multipart(content_type: str, body: bytes) -> dict[str, Any]:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise ParamsError("can't parse multipart body")
    out: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename:  # uploads are recorded by name, size and digest only
            out[str(name)] = {"filename": filename, "size": len(payload),
                              "sha256": hashlib.sha256(payload).hexdigest(),
                              "content_type": part.get_content_type(), **_png_size(payload)}
        else:
            charset = part.get_content_charset() or "utf-8"
            out[str(name)] = payload.decode(charset, errors="replace")
    return out


async def read_params(request: Request) -> dict[str, Any]:
    """Bot API parameters from the query string, then a JSON / form body on top."""
    params: dict[str, Any] = dict(request.query_params)
    body = await request.body()
    if not body.strip():
        return params
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        try:
            params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            raise ParamsError("can't parse form body") from None
    elif media == "multipart/form-data":
        params.update(_parse_multipart(content_type, body))
    else:  # application/json, or no/unknown content type carrying JSON
        try:
            data = json.loads(body)
        except ValueError:
            raise ParamsError("can't parse JSON body") from None
        if not isinstance(data, dict):
            raise ParamsError("JSON body must be an object")
        params.update(data)
    return params


def _error_response(error: BotApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status)


async def _json_body(request: Request) -> dict[str, Any]:
    body = await request.body()
    if not body.strip():
        return {}
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    return data


def create_app(config: EmulatorConfig | None = None) -> FastAPI:
    """A fresh emulator (own in-memory state) as an ASGI app."""
    config = config or EmulatorConfig.from_env()
    emulator = TelegramEmulator(config)
    app = FastAPI(title="Telegram Bot API emulator", docs_url=None, redoc_url=None)
    app.state.emulator = emulator
    state = emulator.state  # reset() mutates in place, so this alias stays valid

    # ----------------------------------------------------------------- Bot API

    @app.api_route("/bot{token}/{method}", methods=["GET", "POST"])
    async def bot_api(token: str, method: str, request: Request) -> JSONResponse:
        if token != config.token:
            async with emulator.lock:
                state.failed += 1
            return _error_response(BotApiError(401, "Unauthorized"))
        if emulator.resolve(method) is None:
            async with emulator.lock:
                state.failed += 1
            return _error_response(BotApiError(404, "Not Found"))
        try:
            raw = await read_params(request)
        except ParamsError as exc:
            async with emulator.lock:
                state.failed += 1
            return _error_response(bad_request(str(exc)))
        async with emulator.lock:
            status, body = emulator.invoke(method, raw)
            send_outbound()
        return JSONResponse(body, status_code=status)

    # ----------------------------------------------------------------- control API

    @app.get("/_emulator/calls")
    async def list_calls(method: str | None = None, chat_id: int | None = None) -> dict:
        async with emulator.lock:
            calls = [
                record.public()
                for record in state.calls
                if (method is None or record.method.lower() == method.lower())
                and (chat_id is None or record.params.get("chat_id") == chat_id)
            ]
        return {"calls": copy.deepcopy(calls)}

    @app.get("/_emulator/topics")
    async def list_topics(chat_id: int | None = None) -> dict:
        async with emulator.lock:
            topics = [
                topic.public()
                for cid, by_id in state.topics.items()
                if chat_id is None or cid == chat_id
                for topic in by_id.values()
            ]
        return {"topics": topics}

    @app.get("/_emulator/pins")
    async def list_pins(chat_id: int) -> dict:
        async with emulator.lock:
            return {"pinned": list(state.pinned.get(chat_id, []))}

    @app.get("/_emulator/messages")
    async def list_messages(chat_id: int | None = None) -> dict:
        async with emulator.lock:
            messages = [
                message
                for cid, by_id in state.messages.items()
                if chat_id is None or cid == chat_id
                for message in sorted(by_id.values(), key=lambda m: m["message_id"])
            ]
            return {"messages": copy.deepcopy(messages)}

    @app.get("/_emulator/stats")
    async def stats() -> dict:
        async with emulator.lock:
            return {"calls": len(state.calls), "failed": state.failed}

    @app.get("/_emulator/webhook")
    async def webhook_info() -> dict:
        async with emulator.lock:
            hook = state.webhook
            return {
                "url": hook.url,
                "secret_token": hook.secret_token,
                "allowed_updates": hook.allowed_updates,
                "max_connections": hook.max_connections,
            }

    @app.get("/_emulator/faults")
    async def list_faults() -> dict:
        async with emulator.lock:
            now = time.monotonic()
            return {"faults": [f.public(now) for f in state.faults if f.active(now)]}

    @app.post("/_emulator/faults")
    async def add_fault(spec: FaultSpec) -> dict:
        async with emulator.lock:
            now = time.monotonic()
            fault = Fault(
                id=next(state.fault_ids),
                status=spec.status,
                retry_after=spec.retry_after,
                methods=frozenset(m.lower() for m in spec.methods)
                if spec.methods is not None
                else None,
                remaining=spec.count if spec.for_seconds is None else None,
                until=now + spec.for_seconds if spec.for_seconds is not None else None,
                description=spec.description,
            )
            state.faults.append(fault)
            return {"fault": fault.public(now)}

    @app.delete("/_emulator/faults")
    async def clear_faults() -> dict:
        async with emulator.lock:
            state.faults.clear()
        return {"ok": True}

    @app.get("/_emulator/updates")
    async def list_deliveries() -> dict:
        async with emulator.lock:
            return {"deliveries": copy.deepcopy(state.deliveries)}

    @app.post("/_emulator/updates")
    async def inject_update(request: Request) -> JSONResponse:
        try:
            body = await _json_body(request)
        except ValueError as exc:
            return JSONResponse({"detail": f"invalid JSON body: {exc}"}, status_code=422)
        if "update" in body:
            if not isinstance(body["update"], dict):
                return JSONResponse({"detail": "update must be an object"}, status_code=422)
            spec = None
        else:
            try:
                spec = ShorthandUpdate.model_validate(body)
            except ValidationError as exc:
                detail = json.loads(exc.json(include_url=False))
                return JSONResponse({"detail": detail}, status_code=422)

        async with emulator.lock:
            hook = state.webhook
            if not hook.url:
                return JSONResponse({"detail": "no webhook set"}, status_code=409)
            url = hook.url
            secret = body["secret_token"] if "secret_token" in body else hook.secret_token
            allowed = hook.allowed_updates
            update = (
                emulator.adopt_update(body["update"])
                if spec is None
                else emulator.build_update(spec)
            )
        status, answer = await send_update(url, secret, allowed, update)
        return JSONResponse(answer, status_code=status)

    async def send_update(url: str, secret: str | None, allowed: list[str] | None,
                          update: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """POST one update to the webhook as the platform does: (control status, what
        happened). An update kind not in allowed_updates is not sent."""
        kind = next((key for key in update if key != "update_id"), None)
        if allowed and kind not in allowed:
            return 200, {
                "update_id": update["update_id"],
                "status_code": None,
                "update": update,
                "skipped": f"{kind} is not in allowed_updates",
            }
        headers = {SECRET_HEADER: str(secret)} if secret is not None else {}
        try:
            async with httpx.AsyncClient(timeout=config.webhook_timeout) as client:
                response = await client.post(url, json=update, headers=headers)
        except httpx.HTTPError as exc:
            error = f"webhook delivery failed: {type(exc).__name__}: {exc}"
            log.warning("%s (update %s -> %s)", error, update["update_id"], url)
            async with emulator.lock:
                emulator.record_delivery(update, None, error)
            return 502, {"detail": error, "update_id": update["update_id"], "update": update}
        async with emulator.lock:
            emulator.record_delivery(update, response.status_code, None)
        return 200, {
            "update_id": update["update_id"],
            "status_code": response.status_code,
            "update": update,
        }

    async def send_to_webhook(update: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """`send_update` to the webhook registered now (409 when there is none)."""
        async with emulator.lock:
            hook = state.webhook
            url, secret, allowed = hook.url, hook.secret_token, hook.allowed_updates
        if not url:
            return 409, {"detail": "no webhook set", "update": update}
        return await send_update(url, secret, allowed, update)

    background: set[asyncio.Task] = set()

    def send_outbound() -> None:
        """Updates the last calls made the platform send, each in a task of its own."""
        for update in state.outbound:
            task = asyncio.create_task(send_to_webhook(update))
            background.add(task)
            task.add_done_callback(background.discard)
        state.outbound.clear()

    # ----------------------------------------------------------------- Stars control API

    @app.post("/_emulator/stars/pay")
    async def stars_pay(spec: StarsPayment) -> JSONResponse:
        """A user pays an invoice: the pre_checkout_query goes to the bot, which must answer
        in time; on yes the successful_payment message follows (unless `deliver` is false:
        the charge is made and its update returned, for the test to deliver)."""
        if spec.link is not None:
            key = spec.link.rsplit("$", 1)[-1] if "$" in spec.link else spec.link
        elif spec.chat_id is not None and spec.message_id is not None:
            key = f"{spec.chat_id}:{spec.message_id}"
        else:
            return JSONResponse({"detail": "give link, or chat_id and message_id"},
                                status_code=422)
        user: dict[str, Any] = {"id": spec.from_id, "is_bot": False,
                                "first_name": spec.from_first_name or f"User {spec.from_id}"}
        if spec.from_username:
            user["username"] = spec.from_username
        async with emulator.lock:
            try:
                query, update = emulator.start_pre_checkout(key, user, spec.total_amount,
                                                            spec.currency)
            except KeyError:
                return JSONResponse({"detail": "no such invoice"}, status_code=404)
        status, delivery = await send_to_webhook(update)
        if status == 409:
            return JSONResponse(delivery, status_code=409)
        try:
            await asyncio.wait_for(query.answered.wait(),
                                   max(0.0, query.deadline - time.monotonic()))
        except TimeoutError:
            pass
        async with emulator.lock:
            answer = query.public()
            if query.ok is not True:
                return JSONResponse({"status": "refused" if query.ok is False else "no_answer",
                                     "pre_checkout_query": answer,
                                     "delivery": delivery})
            charge, paid = emulator.take_payment(query)
        out: dict[str, Any] = {"status": "paid", "pre_checkout_query": answer,
                               "telegram_payment_charge_id": charge.id, "update": paid}
        if spec.deliver:
            out["payment_delivery"] = (await send_to_webhook(paid))[1]
        return JSONResponse(out)

    @app.get("/_emulator/stars/queries")
    async def stars_queries() -> dict:
        async with emulator.lock:
            return {"pre_checkout_queries": [q.public() for q in state.pre_checkouts.values()]}

    @app.get("/_emulator/stars/charges")
    async def stars_charges() -> dict:
        async with emulator.lock:
            return {"charges": [c.public() for c in state.charges.values()]}

    @app.get("/_emulator/stars/invoices")
    async def stars_invoices() -> dict:
        async with emulator.lock:
            return {"invoices": [{"key": k, **v} for k, v in state.invoices.items()]}

    # ----------------------------------------------------------------- shop control API

    @app.post("/_emulator/press")
    async def press(spec: PressButton) -> JSONResponse:
        """A user presses an inline button of the bot's message (by its callback_data, or by
        its text): the callback_query goes to the webhook, its id is returned. A link button
        sends nothing: its URL is returned."""
        user: dict[str, Any] = {"id": spec.from_id, "is_bot": False,
                                "first_name": spec.from_first_name or f"User {spec.from_id}"}
        if spec.from_username:
            user["username"] = spec.from_username
        if spec.language_code:
            user["language_code"] = spec.language_code
        async with emulator.lock:
            try:
                update, url = emulator.press(spec.chat_id, spec.message_id, user, spec.data,
                                             spec.text)
            except LookupError as exc:
                return JSONResponse({"detail": str(exc)}, status_code=404)
        if update is None:
            return JSONResponse({"opened": url})
        status, delivery = await send_to_webhook(update)
        return JSONResponse({**delivery, "callback_query_id": update["callback_query"]["id"]},
                            status_code=status)

    @app.get("/_emulator/callback-queries")
    async def callback_queries(chat_id: int | None = None) -> dict:
        async with emulator.lock:
            return {"callback_queries": [q.public() for q in state.callback_queries.values()
                                         if chat_id is None or q.chat_id == chat_id]}

    @app.post("/_emulator/users/{user_id}/block")
    async def block_user(user_id: int, request: Request) -> JSONResponse:
        """The user blocks (`{"blocked": true}`, the default) or unblocks the bot."""
        try:
            body = await _json_body(request)
        except ValueError as exc:
            return JSONResponse({"detail": f"invalid JSON body: {exc}"}, status_code=422)
        async with emulator.lock:
            if body.get("blocked", True):
                state.blocked.add(user_id)
            else:
                state.blocked.discard(user_id)
            return JSONResponse({"user_id": user_id, "blocked": user_id in state.blocked})

    @app.get("/_emulator/commands")
    async def list_commands() -> dict:
        async with emulator.lock:
            return {"commands": [{"scope": scope, "language_code": lang, "commands": cmds}
                                 for (scope, lang), cmds in state.commands.items()]}

    @app.get("/_emulator/deleted")
    async def list_deleted() -> dict:
        async with emulator.lock:
            return {"deleted": list(state.deleted)}

    @app.post("/_emulator/reset")
    async def reset(request: Request) -> JSONResponse:
        try:
            body = await _json_body(request)
        except ValueError as exc:
            return JSONResponse({"detail": f"invalid JSON body: {exc}"}, status_code=422)
        async with emulator.lock:
            keep = EmulatorState()
            if not body.get("webhook"):
                keep.webhook = state.webhook
            state.__dict__.update(keep.__dict__)
        return JSONResponse({"ok": True})

    telegram_files.install(app, emulator, config.token)
    return app


# --------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> None:
    env_config = EmulatorConfig.from_env()
    parser = argparse.ArgumentParser(
        prog="python -m fakes.telegram", description="Telegram Bot API emulator"
    )
    parser.add_argument("--host", default=os.environ.get("EMULATOR_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("EMULATOR_PORT", "8081")))
    parser.add_argument("--token", default=env_config.token, help="TELEGRAM_BOT_TOKEN")
    parser.add_argument(
        "--bot-username", default=env_config.bot_username, help="EMULATOR_BOT_USERNAME"
    )
    parser.add_argument(
        "--forum-chat-ids",
        default=",".join(str(c) for c in sorted(env_config.forum_chat_ids)),
        help="EMULATOR_FORUM_CHAT_IDS, comma-separated",
    )
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())
    config = EmulatorConfig(
        token=args.token,
        bot_username=args.bot_username,
        forum_chat_ids=_parse_chat_ids(args.forum_chat_ids),
    )
    log.info(
        "Telegram emulator on http://%s:%s (bot @%s, forums %s)",
        args.host,
        args.port,
        config.bot_username,
        sorted(config.forum_chat_ids),
    )
    uvicorn.run(create_app(config), host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
