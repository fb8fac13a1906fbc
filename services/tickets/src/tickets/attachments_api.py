"""Internal HTTP API of attachments: a customer's upload on their ticket (multipart, from the
gateway), reading one back (the owner, staff, the telegram service) and the telegram service's
upload of a file sent in the bot or in the support chat."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile
from pydantic import BaseModel, ValidationError

from contracts.public.tickets import AttachmentEnvelope, MessageCreate, MessageOut
from contracts.text import clean_untrusted, has_visible
from runtime.deps import Ident, Session, Staff
from runtime.errors import NotFound, ValidationFailed
from tickets import attachments
from tickets.service import ticket_service

router = APIRouter(prefix="/internal")

# the path the body limit allows 5 files of 5 MB on (tickets.app)
UPLOAD_PATHS = (r"/internal/tickets/[^/]+/attachments", r"/internal/telegram/attachments",
                r"/internal/admin/tickets/[^/]+/telegram-attachments")
UPLOAD_MAX_BODY = attachments.MAX_PER_MESSAGE * attachments.MAX_BYTES + 64 * 1024


async def uploads(files: list[UploadFile]) -> list[attachments.Upload]:
    """The parts with a file (a browser sends an empty part for an empty file field), each read
    to one byte past the limit at most."""
    out = []
    for f in files:
        data = await f.read(attachments.MAX_BYTES + 1)
        if not f.filename and not data:
            continue
        out.append(attachments.Upload(f.filename, data, f.content_type))
    return out


def _body(text: str | None, files: list[attachments.Checked]) -> str:
    """The message's text: what the customer wrote, else the files' names."""
    if text is None or not has_visible(clean_untrusted(text)):
        return ", ".join(f.name for f in files)[:4000]
    try:
        return MessageCreate(body=text).body
    except ValidationError as exc:
        raise ValidationFailed("Invalid message text", [
            {**e, "loc": ["body", "body"]} for e in exc.errors(include_url=False,
                                                               include_context=False)]) from exc


@router.post("/tickets/{ticket_id}/attachments", status_code=201,
             response_model=AttachmentEnvelope)
async def upload(ticket_id: str, s: Session, ident: Ident,
                 file: Annotated[list[UploadFile], File()],
                 body: Annotated[str | None, Form()] = None):
    """The owner's files (1-5) on a new message of their ticket; `body` its text (the files'
    names without it)."""
    ticket = await ticket_service.get_visible(s, ident, ticket_id, for_update=True)
    checked = attachments.check(await uploads(file))
    msg = await ticket_service.add_message(s, ticket, author="USER", origin="WEB",
                                           body=_body(body, checked), files=checked)
    files = (await attachments.of_messages(s, [msg.id]))[msg.id]
    out = MessageOut.model_validate(msg, from_attributes=True).model_copy(
        update={"attachments": files})
    return {"attachment": files[0], "message": out}


class TelegramFileOut(BaseModel):
    """Where a file from Telegram landed: its ticket, or None when nothing was added (the
    message already landed, or the ticket is closed)."""

    ticket_id: str | None


@router.post("/telegram/attachments", response_model=TelegramFileOut)
async def from_bot(s: Session, ident: Ident, file: Annotated[UploadFile, File()],
                   chat_id: Annotated[int, Form()], message_id: Annotated[int, Form()],
                   caption: Annotated[str | None, Form()] = None,
                   language_code: Annotated[str | None, Form()] = None):
    """A linked customer's photo or document in the bot, from the telegram service signed as
    the customer: on the ticket their text would go to, once per Telegram message."""
    checked = attachments.check(await uploads([file]))
    ticket = await ticket_service.message_from_telegram(
        s, user_id=ident.user_id, ticket_id=None, chat_id=chat_id, message_id=message_id,
        text=caption or "", language_code=language_code, files=checked)
    return {"ticket_id": ticket.id if ticket else None}


@router.post("/admin/tickets/{ticket_id}/telegram-attachments", response_model=TelegramFileOut)
async def from_topic(ticket_id: str, s: Session, ident: Staff,
                     file: Annotated[UploadFile, File()], chat_id: Annotated[int, Form()],
                     message_id: Annotated[int, Form()],
                     operator_telegram_id: Annotated[int, Form()],
                     operator_name: Annotated[str | None, Form()] = None,
                     caption: Annotated[str | None, Form()] = None):
    """An operator's photo or document in the ticket's topic, as their answer (the telegram
    service, signed as the operator `tg:<id>` with role SUPPORT), once per Telegram message."""
    checked = attachments.check(await uploads([file]))
    try:
        ticket = await ticket_service.reply_from_telegram(
            s, ticket_id=ticket_id, chat_id=chat_id, message_id=message_id, body=caption or "",
            operator_telegram_id=operator_telegram_id, operator_name=operator_name,
            files=checked)
    except LookupError as exc:
        raise NotFound("Ticket not found") from exc
    return {"ticket_id": ticket.id if ticket else None}


@router.get("/tickets/{ticket_id}/attachments/{attachment_id}", response_class=Response,
            responses={200: {"content": {t: {} for t in attachments.ALLOWED_TYPES}}})
async def download(ticket_id: str, attachment_id: str, s: Session, ident: Ident):
    """The file to its ticket's owner and to staff (404 for anyone else)."""
    row, data = await attachments.read(s, ident, ticket_id, attachment_id)
    return Response(content=data, media_type=row.content_type, headers={
        "Content-Disposition": attachments.content_disposition(row.name),
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, no-store",
    })
