"""Photos and documents both ways between Telegram and the tickets service.

In: a linked customer's photo or document in the bot (`message.photo`, `message.document`; the
caption is its text) and an operator's in a ticket's topic are checked against the rules (png,
jpeg or pdf, at most 5 MB, as Telegram describes the file; the tickets service checks the bytes
again), downloaded (`getFile`, then the file URL) and uploaded to the tickets service, which
keeps each Telegram message once. A file outside the rules gets a clear reply and nothing is
stored. The calls are made while the update is handled: a failure (Telegram or the tickets
service away) fails the update, which the pump retries later.

Out: each file of a ticket message becomes a row of its own after the message's text:
`ticket_file` into the ticket's topic (not for an operator's own file from the topic), and
`user_file` into the customer's chat for a support answer. Delivery reads the bytes from the
tickets service as the ticket's customer and sends them with `sendPhoto` (png, jpeg; a photo
Telegram refuses, e.g. too long a side, goes as a document) or `sendDocument` (pdf).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.tickets import MessageAddedV1, TicketOpenedV1
from runtime import identity
from runtime.logging import get_logger
from telegram import texts
from telegram.botapi import BotApi, TelegramError
from telegram.config import Settings
from telegram.models import Outgoing, TicketThread
from telegram.repository import ShopRepository, TelegramRepository

log = get_logger(__name__)

MAX_BYTES = 5 * 1024 * 1024
TYPES = {"image/png": "png", "image/jpeg": "jpg", "application/pdf": "pdf"}
FILE_KINDS = frozenset({"ticket_file", "user_file"})
CAPTION_MAX = 1024

FILE_TEXTS = {
    "en": {"file_type": "⚠️ I can pass on PNG or JPEG pictures and PDF files only. This file "
                        "was not sent to support.",
           "file_size": "⚠️ This file is larger than 5 MB, so it was not sent to support.",
           "file_taken": "📎 Got it: support will see your file.",
           "topic_file_refused": "⚠️ Not sent to the customer: only PNG, JPEG or PDF files of "
                                 "at most 5 MB can be attached."},
    "ru": {"file_type": "⚠️ Я могу передать только картинки PNG или JPEG и файлы PDF. Этот "
                        "файл не отправлен в поддержку.",
           "file_size": "⚠️ Файл больше 5 МБ, поэтому он не отправлен в поддержку.",
           "file_taken": "📎 Получили: поддержка увидит ваш файл.",
           "topic_file_refused": "⚠️ Not sent to the customer: only PNG, JPEG or PDF files of "
                                 "at most 5 MB can be attached."},
}


def say(lang: str, key: str) -> str:
    return FILE_TEXTS.get(lang, FILE_TEXTS["en"])[key]


def file_of(message: dict) -> dict[str, Any] | None:
    """The message's photo (its largest size) or document as `{file_id, size, name, mime}`;
    None when it has neither."""
    photo = message.get("photo")
    if isinstance(photo, list) and photo and isinstance(photo[-1], dict):
        best = photo[-1]
        return {"file_id": best.get("file_id"), "size": best.get("file_size"),
                "name": f"photo_{message.get('message_id')}.jpg", "mime": "image/jpeg"}
    doc = message.get("document")
    if isinstance(doc, dict):
        return {"file_id": doc.get("file_id"), "size": doc.get("file_size"),
                "name": str(doc.get("file_name") or "document"),
                "mime": str(doc.get("mime_type") or "application/octet-stream").lower()}
    return None


def refusal(f: dict[str, Any]) -> str | None:
    """Why the file is not taken ("file_type", "file_size"), or None."""
    if f["mime"] not in TYPES or not isinstance(f.get("file_id"), str):
        return "file_type"
    if isinstance(f.get("size"), int) and f["size"] > MAX_BYTES:
        return "file_size"
    return None


def support_chats(settings: Settings) -> set[int]:
    chats = getattr(settings, "support_chats", None)
    return set(chats) if chats else {settings.support_chat_id}


class TicketFiles:
    """The tickets service's file endpoints and Telegram's file downloads."""

    def __init__(self, settings: Settings, timeout: float = 30.0):
        self.settings = settings
        self.key = settings.internal_signing_key
        self.tickets = httpx.AsyncClient(base_url=settings.tickets_url.rstrip("/"),
                                         timeout=timeout)
        self.files_url = f"{settings.api_base.rstrip('/')}/file/bot{settings.bot_token}/"
        self.bot = BotApi(settings.api_base, settings.bot_token)  # getFile

    def _who(self, user_id: str, role: str) -> dict[str, str]:
        return {identity.HEADER: identity.sign(self.key, user_id, role, audience="tickets")}

    async def download(self, file_id: str) -> bytes:
        """The file's bytes (getFile, then the file URL); TelegramError when Telegram refuses
        or is away."""
        info = await self.bot.call("getFile", file_id=file_id)
        path = (info or {}).get("file_path")
        if not path:
            raise TelegramError(400, "Bad Request: file has no path")
        try:
            r = await self.tickets.get(self.files_url + quote(path))
        except httpx.HTTPError as exc:
            raise TelegramError(599, f"transport error: {type(exc).__name__}") from exc
        if r.status_code != 200:
            raise TelegramError(r.status_code, f"file download failed: {r.status_code}")
        return r.content

    async def upload(self, path: str, who: dict[str, str], form: dict[str, str],
                     f: dict[str, Any], data: bytes) -> tuple[int, dict]:
        """POST the file; (status, body). A 5xx or no answer raises (the update is retried)."""
        # the type is the tickets service's to tell from the bytes (Telegram's is a claim)
        r = await self.tickets.post("/internal" + path, headers=who,
                                    data={k: v for k, v in form.items() if v is not None},
                                    files={"file": (f["name"], data, "application/octet-stream")})
        if r.status_code >= 500:
            raise RuntimeError(f"tickets service answered {r.status_code}")
        return r.status_code, r.json() if r.content else {}

    async def read(self, user_id: str, ticket_id: str, attachment_id: str) -> bytes:
        path = (f"/internal/tickets/{quote(ticket_id, safe='')}/attachments/"
                f"{quote(attachment_id, safe='')}")
        r = await self.tickets.get(path, headers=self._who(user_id, "USER"))
        if r.status_code != 200:
            raise RuntimeError(f"attachment {attachment_id}: tickets answered {r.status_code}")
        return r.content

    async def close(self) -> None:
        await self.tickets.aclose()
        await self.bot.close()

    # ---------------------------------------------------------------- in: Telegram → ticket

    async def on_file(self, s: AsyncSession, update_id: int,
                      message: dict) -> tuple[str, list[int]]:
        f = file_of(message)
        assert f is not None
        chat = message.get("chat") or {}
        sender = message.get("from") or {}
        if chat.get("id") in support_chats(self.settings):
            return await self._from_operator(s, update_id, message, sender, f)
        if chat.get("type") == "private" and isinstance(sender.get("id"), int):
            return await self._from_customer(s, update_id, message, sender, f)
        return "ignored:other_chat", []

    async def _reply(self, s: AsyncSession, update_id: int, chat_id: int, text: str,
                     thread_id: int | None = None, kind: str = "bot_reply") -> list[int]:
        oid = await TelegramRepository(s).add_outgoing(
            event_id=f"update-{update_id}", ticket_id=None, chat_id=chat_id, thread_id=thread_id,
            kind=kind, seq=0, text=text)
        return [oid] if oid else []

    async def _from_customer(self, s, update_id, message, sender, f):
        repo = TelegramRepository(s)
        chat_id = message["chat"]["id"]
        user = await ShopRepository(s).bot_user(sender["id"], chat_id,
                                                sender.get("language_code"))
        lang = texts.language_of(user.language, sender.get("language_code"))
        link = await repo.link_for_telegram(sender["id"])
        if link is None:
            return "unlinked", await self._reply(s, update_id, chat_id,
                                                 texts.t(lang, "unlinked_chat"))
        if await repo.is_blocked(link.user_id):
            return "blocked", await self._reply(s, update_id, chat_id, texts.t(lang, "blocked"))
        why = refusal(f)
        if why is not None:
            return f"file_refused:{why}", await self._reply(s, update_id, chat_id,
                                                            say(lang, why))
        data = await self.download(f["file_id"])
        status, body = await self.upload("/telegram/attachments", self._who(link.user_id, "USER"), {
            "chat_id": str(chat_id), "message_id": str(message["message_id"]),
            "caption": message.get("caption"), "language_code": sender.get("language_code")},
            f, data)
        if status >= 400:  # the bytes are not what Telegram said (the tickets service checks)
            log.warning("telegram_file_refused", status=status, code=body.get("code"))
            return "file_refused:tickets", await self._reply(s, update_id, chat_id,
                                                             say(lang, "file_type"))
        return "user_file", await self._reply(s, update_id, chat_id, say(lang, "file_taken"),
                                              kind="bot_ack")

    async def _from_operator(self, s, update_id, message, sender, f):
        if sender.get("is_bot") or sender.get("id") not in self.settings.operator_ids:
            return "ignored:not_operator", []
        repo = TelegramRepository(s)
        chat_id = message["chat"]["id"]
        thread: TicketThread | None = None
        if message.get("is_topic_message") and message.get("message_thread_id"):
            thread = await repo.thread_by_topic(chat_id, message["message_thread_id"])
        ticket_id = thread.ticket_id if thread else None
        if ticket_id is None and isinstance(message.get("reply_to_message"), dict):
            ticket_id = await repo.ticket_by_message(chat_id,
                                                     message["reply_to_message"]["message_id"])
        if ticket_id is None:
            return "ignored:no_ticket", []
        topic = message.get("message_thread_id") if message.get("is_topic_message") else None
        why = refusal(f)
        if why is not None:
            return f"file_refused:{why}", await self._reply(
                s, update_id, chat_id, say("en", "topic_file_refused"), thread_id=topic,
                kind="closed_notice")
        data = await self.download(f["file_id"])
        name = " ".join(filter(None, [sender.get("first_name"), sender.get("last_name")])) or None
        status, body = await self.upload(
            f"/admin/tickets/{quote(ticket_id, safe='')}/telegram-attachments",
            self._who(f"tg:{sender['id']}", "SUPPORT"),
            {"chat_id": str(chat_id), "message_id": str(message["message_id"]),
             "operator_telegram_id": str(sender["id"]), "operator_name": name,
             "caption": message.get("caption")}, f, data)
        if status >= 400:
            log.warning("telegram_file_refused", status=status, code=body.get("code"))
            return "file_refused:tickets", await self._reply(
                s, update_id, chat_id, say("en", "topic_file_refused"), thread_id=topic,
                kind="closed_notice")
        return "support_file", []

    # ---------------------------------------------------------------- out: ticket → Telegram

    async def send(self, bot: BotApi, row: Outgoing, thread: TicketThread | None,
                   forum: bool) -> dict:
        """Send the row's file: into the ticket's topic (or as a reply to its root message in a
        plain group) for `ticket_file`, into the customer's chat for `user_file`."""
        p = row.params or {}
        data = await self.read(p["user_id"], p["ticket_id"], p["attachment_id"])
        target: dict[str, Any] = {"chat_id": row.chat_id}
        if row.kind == "ticket_file" and thread is not None:
            target["chat_id"] = thread.chat_id
            if forum:
                target["message_thread_id"] = thread.message_thread_id
            elif thread.root_message_id:
                target["reply_parameters"] = {"message_id": thread.root_message_id,
                                              "allow_sending_without_reply": True}
        upload = (p["name"], data, p["content_type"])
        caption = (row.text or "")[:CAPTION_MAX] or None
        if p["content_type"] != "application/pdf":
            try:
                return await bot.upload("sendPhoto", {"photo": upload}, caption=caption,
                                        **target)
            except TelegramError as exc:
                if not exc.is_permanent:
                    raise
                log.info("telegram_photo_as_document", error=exc.description)
        return await bot.upload("sendDocument", {"document": upload}, caption=caption, **target)


async def file_rows(repo: TelegramRepository, eid: str, event, chat: int,
                    customer_chat: int | None) -> list[int | None]:
    """The rows of the event's files: into the topic unless they are an operator's own from
    Telegram, and into the customer's chat (`customer_chat`) for a support answer."""
    if isinstance(event, TicketOpenedV1):
        files, author, origin = event.message.attachments, "USER", event.message.origin
    elif isinstance(event, MessageAddedV1):
        files, author, origin = event.attachments, event.author_role, event.origin
    else:
        return []
    ids: list[int | None] = []
    for i, a in enumerate(files):
        params = {"ticket_id": event.ticket_id, "user_id": event.user_id,
                  "attachment_id": a.attachment_id, "name": a.name,
                  "content_type": a.content_type}
        caption = f"📎 {a.name}" if author == "USER" else f"📎 Support: {a.name}"
        if not (author == "SUPPORT" and origin == "TELEGRAM"):
            ids.append(await repo.add_outgoing(
                event_id=f"{eid}:file:{i}", ticket_id=event.ticket_id, chat_id=chat,
                kind="ticket_file", seq=event.seq, text=caption, params=params))
        if author == "SUPPORT" and customer_chat is not None:
            ids.append(await repo.add_outgoing(
                event_id=f"{eid}:file:{i}", ticket_id=event.ticket_id, chat_id=customer_chat,
                kind="user_file", seq=event.seq, text=f"📎 {a.name}", params=params))
    return ids
