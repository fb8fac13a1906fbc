"""Attachments of ticket messages: what is accepted (png, jpeg, pdf by their magic bytes, at most
5 MB each and 5 per message), how they are stored (a row and its bytes in Postgres,
docs/06-adr/0009) and who may read them (the ticket's owner and staff)."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.public.tickets import AttachmentOut
from contracts.text import clean_untrusted
from contracts.tickets import TicketAttachment
from runtime.clock import now
from runtime.errors import NotFound, PayloadTooLarge, ValidationFailed
from runtime.identity import Identity
from tickets.models import Attachment, AttachmentBlob, Message, Ticket

MAX_BYTES = 5 * 1024 * 1024
MAX_PER_MESSAGE = 5

# What a file must start with to be stored as that type, and its usual extension.
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
    (b"%PDF-", "application/pdf", "pdf"),
)
ALLOWED_TYPES = tuple(t for _, t, _ in _MAGIC)
# Declared types that say nothing about the file: the magic bytes decide alone.
_GENERIC = {"", "application/octet-stream", "binary/octet-stream"}
_NAME_MAX = 200


@dataclass(frozen=True, slots=True)
class Upload:
    """A file as received: its name, its bytes and the type its sender declared."""

    name: str | None
    data: bytes
    declared_type: str | None = None


@dataclass(frozen=True, slots=True)
class Checked:
    name: str
    data: bytes
    content_type: str


def sniff(data: bytes) -> str | None:
    """The accepted type `data` really is by its first bytes, or None."""
    for magic, ctype, _ in _MAGIC:
        if data.startswith(magic):
            return ctype
    return None


def _extension(ctype: str) -> str:
    return next(ext for _, t, ext in _MAGIC if t == ctype)


def safe_name(name: str | None, ctype: str) -> str:
    """The file's name as stored and shown: no directories, no control or invisible
    characters, at most 200 characters; `attachment.<ext>` when nothing is left."""
    base = re.split(r"[\\/]", name or "")[-1]
    cleaned = clean_untrusted(re.sub(r"[\x00-\x1f\x7f\"]", "", base))[:_NAME_MAX].strip(" .")
    return cleaned or f"attachment.{_extension(ctype)}"


def _refuse(index: int, message: str, kind: str) -> ValidationFailed:
    return ValidationFailed(message, [{"loc": ["body", "file", index], "msg": message,
                                       "type": kind}])


def check(files: Sequence[Upload], *, already: int = 0) -> list[Checked]:
    """The files if every one is acceptable; otherwise the first refusal (400, or 413 for a
    file over 5 MB) and nothing is kept."""
    if not files:
        raise ValidationFailed("Attach at least one file",
                               [{"loc": ["body", "file"], "msg": "Field required",
                                 "type": "missing"}])
    if already + len(files) > MAX_PER_MESSAGE:
        raise ValidationFailed(f"At most {MAX_PER_MESSAGE} files per message",
                               [{"loc": ["body", "file"], "msg": "Too many files",
                                 "type": "too_many_files", "ctx": {"max": MAX_PER_MESSAGE}}])
    out = []
    for i, f in enumerate(files):
        if len(f.data) > MAX_BYTES:
            raise PayloadTooLarge("A file is larger than 5 MB",
                                  {"max_bytes": MAX_BYTES, "file": i})
        if not f.data:
            raise _refuse(i, "The file is empty", "empty_file")
        ctype = sniff(f.data)
        if ctype is None:
            raise _refuse(i, "Only PNG, JPEG and PDF files are accepted", "unsupported_type")
        declared = (f.declared_type or "").split(";", 1)[0].strip().lower()
        if declared not in _GENERIC and declared != ctype:
            raise _refuse(i, f"The file is not the {declared} it claims to be", "type_mismatch")
        out.append(Checked(safe_name(f.name, ctype), f.data, ctype))
    return out


def names(files: Sequence[Checked]) -> str | None:
    """The text of a message that is only files: their names."""
    return ", ".join(f.name for f in files)[:4000] or None


async def store(session: AsyncSession, ticket: Ticket, message: Message,
                files: Sequence[Checked]) -> list[TicketAttachment]:
    """The checked files on `message`, as events name them."""
    ts = now()
    stored = []
    for position, f in enumerate(files):
        row = Attachment(id=uuid.uuid4().hex, ticket_id=ticket.id, message_id=message.id,
                         name=f.name, content_type=f.content_type, size=len(f.data),
                         sha256=hashlib.sha256(f.data).hexdigest(), created_at=ts,
                         position=position)
        session.add(row)
        await session.flush()
        session.add(AttachmentBlob(attachment_id=row.id, data=f.data))
        stored.append(TicketAttachment(attachment_id=row.id, name=row.name,
                                       content_type=row.content_type, size=row.size))
    await session.flush()
    return stored


async def of_messages(session: AsyncSession, message_ids: Sequence[str]
                      ) -> dict[str, list[AttachmentOut]]:
    """The attachments of these messages (no bytes), oldest first, by message id."""
    if not message_ids:
        return {}
    stmt = (sa.select(Attachment).where(Attachment.message_id.in_(list(message_ids)))
            .order_by(Attachment.message_id, Attachment.position))
    out: dict[str, list[AttachmentOut]] = {}
    for a in (await session.execute(stmt)).scalars():
        out.setdefault(a.message_id, []).append(
            AttachmentOut(id=a.id, name=a.name, content_type=a.content_type, size=a.size))
    return out


async def read(session: AsyncSession, identity: Identity, ticket_id: str,
               attachment_id: str) -> tuple[Attachment, bytes]:
    """The attachment and its bytes for its ticket's owner or staff; anyone else gets 404, as
    for a ticket that is not theirs. An attachment on an internal note is staff-only."""
    stmt = (sa.select(Attachment, AttachmentBlob.data, Ticket.user_id, Message.kind)
            .join(AttachmentBlob, AttachmentBlob.attachment_id == Attachment.id)
            .join(Ticket, Ticket.id == Attachment.ticket_id)
            .join(Message, Message.id == Attachment.message_id)
            .where(Attachment.id == attachment_id, Attachment.ticket_id == ticket_id))
    row = (await session.execute(stmt)).one_or_none()
    if row is None:
        raise NotFound("Attachment not found")
    attachment, data, owner, kind = row
    if not identity.is_staff and (
            owner != identity.user_id or kind != "MESSAGE"):
        raise NotFound("Attachment not found")
    return attachment, data


def content_disposition(name: str) -> str:
    """`attachment` with an ASCII fallback name and the real one per RFC 6266 / 5987."""
    ascii_name = name.encode("ascii", "replace").decode("ascii").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"
