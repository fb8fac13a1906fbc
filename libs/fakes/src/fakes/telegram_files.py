"""Files in the Telegram emulator (adapters-wave2 §7).

* What users send: a test stores a file with ``POST /_emulator/files`` (multipart ``file``,
  ``kind`` ``photo`` or ``document``) and gets the ``photo`` (an array of PhotoSize) or
  ``document`` object to put into a message it injects with ``POST /_emulator/updates``.
* ``getFile(file_id)`` → ``{file_id, file_unique_id, file_size, file_path}`` for a stored file
  (400 "invalid file_id" otherwise; 400 "file is too big" past the 20 MB bots may download),
  and ``GET /file/bot<token>/<file_path>`` serves its bytes.
* The bot's ``sendDocument``: a multipart upload (at most 50 MB, else 413 "Request Entity Too
  Large"), recorded by name, type, size and SHA-256 (``file_unique_id`` is the digest's first
  16 characters), or a known ``file_id``; a caption of at most 1024 characters.
  ``sendPhoto`` uploads are at most 10 MB (``PHOTO_TOO_BIG`` check below).
"""

from __future__ import annotations

import hashlib
import secrets
import sys
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
MAX_PHOTO_BYTES = 10 * 1024 * 1024
MAX_DOCUMENT_BYTES = 50 * 1024 * 1024


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    data: bytes
    name: str
    mime_type: str

    @property
    def path(self) -> str:
        return f"files/{self.file_unique_id}/{self.name}"


def _platform(emulator):
    """The emulator's own module (it may run as `__main__`): its errors and helpers."""
    return sys.modules[type(emulator).__module__]


def photo_too_big(photo: Any) -> bool:
    """Whether a sendPhoto upload passes the platform's 10 MB."""
    return isinstance(photo, dict) and int(photo.get("size") or 0) > MAX_PHOTO_BYTES


def store(state, data: bytes, name: str, mime_type: str) -> StoredFile:
    unique = hashlib.sha256(data).hexdigest()[:16]
    f = StoredFile(f"BQAC{unique}{secrets.token_urlsafe(12)}", unique, data, name, mime_type)
    state.files[f.file_id] = f
    return f


def get_file(emulator, params) -> dict[str, Any]:
    bad_request = _platform(emulator).bad_request
    file_id = params.get_str("file_id")
    if not file_id:
        raise bad_request("file_id is empty")
    f = emulator.state.files.get(file_id)
    if f is None:
        raise bad_request("invalid file_id")
    if len(f.data) > MAX_DOWNLOAD_BYTES:
        raise bad_request("file is too big")
    return {"file_id": f.file_id, "file_unique_id": f.file_unique_id, "file_size": len(f.data),
            "file_path": f.path}


def send_document(emulator, params) -> dict[str, Any]:
    t = _platform(emulator)
    bad_request = t.bad_request
    chat_id = params.get_chat_id()
    document = params.raw.get("document")
    if document is None or document == "":
        raise bad_request("there is no document in the request")
    if isinstance(document, dict) and "size" in document:  # a multipart upload
        if not document["size"]:
            raise bad_request("file must be non-empty")
        if document["size"] > MAX_DOCUMENT_BYTES:
            raise t.BotApiError(413, "Request Entity Too Large")
        unique = str(document.get("sha256", ""))[:16] or secrets.token_hex(8)
        doc = {"file_id": f"BQAC{unique}{secrets.token_urlsafe(12)}", "file_unique_id": unique,
               "file_name": document.get("filename"), "file_size": document["size"]}
        if document.get("content_type"):
            doc["mime_type"] = document["content_type"]
    elif isinstance(document, str) and document in emulator.state.files:
        f = emulator.state.files[document]
        doc = {"file_id": f.file_id, "file_unique_id": f.file_unique_id, "file_name": f.name,
               "mime_type": f.mime_type, "file_size": len(f.data)}
    else:
        raise bad_request("wrong remote file identifier specified: Wrong string length")
    caption = params.get_str("caption")
    parse_mode = params.get_str("parse_mode")
    extra: dict[str, Any] = {"document": doc}
    if caption is not None and parse_mode and parse_mode.lower() == "html":
        caption, entities = t.parse_html(caption)
        if entities:
            extra["caption_entities"] = entities
    if caption is not None and t._utf16_len(caption) > t.MAX_CAPTION_LENGTH:
        raise bad_request("message caption is too long")
    if caption:
        extra["caption"] = caption
    return emulator.post_media(chat_id, params.get_int("message_thread_id"), extra)


def install(app: FastAPI, emulator, token: str) -> None:
    """The control route that stores a user's file and the file download URL."""

    @app.post("/_emulator/files")
    async def upload_file(request: Request) -> JSONResponse:
        form = await request.form()
        upload = form.get("file")
        kind = str(form.get("kind") or "document")
        if upload is None or isinstance(upload, str) or kind not in {"photo", "document"}:
            return JSONResponse({"detail": "multipart `file` and kind photo|document expected"},
                                status_code=422)
        data = await upload.read()
        name = upload.filename or ("photo.jpg" if kind == "photo" else "file")
        mime = str(form.get("mime_type") or upload.content_type or "application/octet-stream")
        async with emulator.lock:
            f = store(emulator.state, data, name, mime)
        if kind == "photo":  # sizes smallest first, as Telegram sends them: a thumbnail,
            # then the original (a bot that takes the first gets the thumbnail's bytes)
            async with emulator.lock:
                thumb = store(emulator.state, data[:256], f"thumb_{name}", mime)
            out = {"photo": [{"file_id": thumb.file_id, "file_unique_id": thumb.file_unique_id,
                              "width": 90, "height": 51, "file_size": len(thumb.data)},
                             {"file_id": f.file_id, "file_unique_id": f.file_unique_id,
                              "width": 1280, "height": 720, "file_size": len(data)}]}
        else:
            out = {"document": {"file_id": f.file_id, "file_unique_id": f.file_unique_id,
                                "file_name": name, "mime_type": mime, "file_size": len(data)}}
        return JSONResponse(out)

    @app.get("/file/bot{bot_token}/{file_path:path}")
    async def download(bot_token: str, file_path: str) -> Response:
        if bot_token != token:
            return JSONResponse({"ok": False, "error_code": 401,
                                 "description": "Unauthorized"}, status_code=401)
        async with emulator.lock:
            found = next((f for f in emulator.state.files.values() if f.path == file_path), None)
        if found is None:
            return JSONResponse({"ok": False, "error_code": 404, "description": "Not Found"},
                                status_code=404)
        return Response(found.data, media_type="application/octet-stream")
