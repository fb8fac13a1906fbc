"""Attachments on the ticket pages: files sent with a reply on the customer's ticket page, and
each file of a thread downloaded by its ticket's owner (`/app`) or staff (`/admin`)."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request, Response
from starlette.datastructures import UploadFile

from gateway.api.tickets import UPLOAD_MAX_BODY, attachment_response
from gateway.web.deps import SignedIn, Staff
from gateway.web.forms import FormInvalid
from gateway.web.rendering import WebRoute, translator
from runtime.errors import AppError

panel = APIRouter(prefix="/app", route_class=WebRoute)
router = APIRouter(prefix="/admin", route_class=WebRoute)

# the customer's reply form, which may carry files (the body limit: gateway.app)
WEB_UPLOAD_PATTERN = r"/app/tickets/[^/]+/messages"
MAX_FILE = 5 * 1024 * 1024
_REFUSALS = {"unsupported_type", "type_mismatch", "empty_file", "too_many_files"}


async def posted_files(request: Request) -> list[UploadFile]:
    """The reply form's chosen files (a browser sends an empty part when none is chosen)."""
    form = await request.form()
    return [f for f in form.getlist("file") if isinstance(f, UploadFile) and f.filename]


def _multipart(text: str, files: list[tuple[str, bytes, str]]) -> tuple[bytes, str]:
    boundary = secrets.token_hex(16)
    parts = []
    if text:
        parts.append(b'Content-Disposition: form-data; name="body"\r\n\r\n' + text.encode())
    for name, data, ctype in files:
        safe = name.replace('"', "").replace("\r", "").replace("\n", "")
        parts.append(f'Content-Disposition: form-data; name="file"; filename="{safe}"\r\n'
                     f"Content-Type: {ctype}\r\n\r\n".encode() + data)
    sep = f"--{boundary}\r\n".encode()
    body = b"".join(sep + p + b"\r\n" for p in parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


async def send_with_files(request: Request, caller, ticket_id: str, text: str,
                          files: list[UploadFile]) -> None:
    """The reply's text and files as one message, through the same client call and rate limit
    as `POST /api/v1/tickets/{id}/attachments`; a refused file is a FormInvalid on `file`."""
    t = translator(request)
    read = []
    for f in files:
        data = await f.read(MAX_FILE + 1)
        read.append((f.filename or "", data, f.content_type or "application/octet-stream"))
    content, ctype = _multipart(text, read)
    if len(content) > UPLOAD_MAX_BODY:
        raise FormInvalid({"file": t("attachment.too_large")})
    await request.app.state.limits.attachment(caller.id, ticket_id)
    try:
        await request.app.state.clients.tickets.attach(caller, ticket_id, content, ctype)
    except AppError as exc:
        if exc.status == 413:
            raise FormInvalid({"file": t("attachment.too_large")}) from exc
        if exc.status != 400:
            raise
        details = exc.details if isinstance(exc.details, list) else []
        kind = str(details[0].get("type")) if details else ""
        field = "body" if details and "body" in details[0].get("loc", [])[1:] else "file"
        message = t(f"attachment.{kind}") if kind in _REFUSALS else exc.message
        raise FormInvalid({field: message}) from exc


@panel.get("/tickets/{ticket_id}/attachments/{attachment_id}")
async def customer_file(request: Request, caller: SignedIn, ticket_id: str,
                        attachment_id: str) -> Response:
    r = await request.app.state.clients.tickets.attachment(caller, ticket_id, attachment_id)
    return attachment_response(r)


@router.get("/tickets/{ticket_id}/attachments/{attachment_id}")
async def staff_file(request: Request, caller: Staff, ticket_id: str,
                     attachment_id: str) -> Response:
    r = await request.app.state.clients.tickets.attachment(caller, ticket_id, attachment_id)
    return attachment_response(r)
