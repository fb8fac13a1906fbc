"""The admin panel's broadcasts (`/admin/broadcasts`, ADMIN): the list, the form (English and
Russian, a segment, up to 3 URL buttons), and a broadcast's page: preview to one Telegram
account, send / pause / resume / cancel, and its progress bar, refreshed by htmx from
`/progress` while it is under way. Mutations go through `gateway.broadcasts` (audited), as the
API's do."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import ValidationError

from contracts.public.broadcasts import SEGMENTS, BroadcastCreate, PreviewBody
from gateway import broadcasts
from gateway.web.deps import Admin, Form
from gateway.web.forms import field_errors, refusal_errors
from gateway.web.rendering import WebRoute, render, see_other, translator
from runtime.errors import AppError, NotFound

router = APIRouter(prefix="/admin", route_class=WebRoute)

BUTTON_ROWS = 3
ID_CHARS = frozenset("0123456789abcdef")


def _checked(broadcast_id: str) -> str:
    if len(broadcast_id) != 32 or not set(broadcast_id) <= ID_CHARS:
        raise NotFound("No such broadcast")
    return broadcast_id


def _form(form: dict) -> tuple[dict, list[int]]:
    """The form as a `BroadcastCreate` body, and the form row each button came from."""
    buttons, rows = [], []
    for i in range(1, BUTTON_ROWS + 1):
        text = (form.get(f"button_text_{i}") or "").strip()
        url = (form.get(f"button_url_{i}") or "").strip()
        if text or url:
            buttons.append({"text": text, "url": url})
            rows.append(i)
    return {"text_en": form.get("text_en") or "", "text_ru": form.get("text_ru") or "",
            "segment": form.get("segment") or "", "buttons": buttons}, rows


def _errors(exc: ValidationError, rows: list[int], t) -> dict[str, str]:
    """Field messages; a button's error is shown at its row (`button_url_2`)."""
    out: dict[str, str] = {}
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        if len(loc) >= 3 and loc[0] == "buttons":
            out.setdefault(f"button_{loc[2]}_{rows[int(loc[1])]}",
                           field_errors([{**err, "loc": (loc[2],)}], t)[loc[2]])
        elif loc and loc[0] == "buttons":
            out.setdefault("form", str(err.get("msg", "")))
    plain = [e for e in exc.errors() if not e["loc"] or e["loc"][0] != "buttons"]
    return {**field_errors(plain, t), **out}


async def _list_page(request: Request, caller, status: int = 200, errors: dict | None = None,
                     values: dict | None = None):
    listed = (await request.app.state.clients.telegram.broadcasts(caller)).json()
    return render(request, "admin/broadcasts.html", http_status=status,
                  broadcasts=listed["broadcasts"], segments=SEGMENTS, errors=errors or {},
                  values=values or {}, button_rows=range(1, BUTTON_ROWS + 1))


@router.get("/broadcasts")
async def list_page(request: Request, caller: Admin):
    return await _list_page(request, caller)


@router.post("/broadcasts")
async def create(request: Request, caller: Admin, form: Form):
    t = translator(request)
    values, rows = _form(form)
    try:
        body = BroadcastCreate.model_validate(values)
        reply = await broadcasts.create(request.app.state.actions, request.app.state.limits,
                                        caller, body)
    except ValidationError as exc:
        errors = _errors(exc, rows, t)
    except AppError as exc:
        errors = refusal_errors(exc, t)
    else:
        return see_other(f"/admin/broadcasts/{reply.data.broadcast.id}?done=broadcast_created")
    return await _list_page(request, caller, 400, errors, dict(form))


async def _page(request: Request, caller, broadcast_id: str, status: int = 200,
                errors: dict | None = None, values: dict | None = None):
    b = (await request.app.state.clients.telegram.broadcast(caller, broadcast_id)).json()
    return render(request, "admin/broadcast.html", http_status=status, b=b["broadcast"],
                  errors=errors or {}, values=values or {})


@router.get("/broadcasts/{broadcast_id}")
async def page(request: Request, caller: Admin, broadcast_id: str):
    return await _page(request, caller, _checked(broadcast_id))


@router.get("/broadcasts/{broadcast_id}/progress")
async def progress(request: Request, caller: Admin, broadcast_id: str):
    """The progress bar alone, for htmx to swap in while the broadcast is under way."""
    b = (await request.app.state.clients.telegram.broadcast(
        caller, _checked(broadcast_id))).json()
    return render(request, "admin/_broadcast_progress.html", b=b["broadcast"])


@router.post("/broadcasts/{broadcast_id}/preview")
async def preview(request: Request, caller: Admin, form: Form, broadcast_id: str):
    t = translator(request)
    broadcast_id = _checked(broadcast_id)
    raw = (form.get("telegram_user_id") or "").strip()
    try:
        body = PreviewBody.model_validate({"telegram_user_id": int(raw)})
        await broadcasts.preview(request.app.state.actions, request.app.state.limits, caller,
                                 broadcast_id, body)
    except (ValueError, ValidationError):
        errors = {"telegram_user_id": t("form.number")}
    except AppError as exc:
        errors = refusal_errors(exc, t, "telegram_user_id", raise_not_found=True)
    else:
        return see_other(f"/admin/broadcasts/{broadcast_id}?done=broadcast_previewed")
    return await _page(request, caller, broadcast_id, 400, errors, dict(form))


@router.post("/broadcasts/{broadcast_id}/{action}")
async def change(request: Request, caller: Admin, form: Form, broadcast_id: str, action: str):
    broadcast_id = _checked(broadcast_id)
    if action not in broadcasts.ACTIONS:
        raise NotFound()
    try:
        await broadcasts.change(request.app.state.actions, caller, broadcast_id, action)
    except AppError as exc:
        if exc.status != 409:
            raise
        return see_other(f"/admin/broadcasts/{broadcast_id}?done=broadcast_conflict")
    return see_other(f"/admin/broadcasts/{broadcast_id}?done=broadcast_{action}")
