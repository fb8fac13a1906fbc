"""Form validation: the API's own request models, with errors turned into per-field messages."""

from __future__ import annotations

from pydantic import BaseModel, Field, ValidationError

from gateway.web.i18n import Translator
from runtime.errors import AppError

_MESSAGES = {
    "missing": "form.required",
    "string_too_short": "form.too_short",
    "string_too_long": "form.too_long",
    "value_error": "form.invalid",
    "int_parsing": "form.number",
    "int_type": "form.number",
    "greater_than_equal": "form.min",
    "less_than_equal": "form.max",
    "string_pattern_mismatch": "form.invalid",
    "literal_error": "form.invalid",
}


class FormInvalid(Exception):
    """Field name → message, to show next to each field."""

    def __init__(self, errors: dict[str, str]):
        super().__init__(errors)
        self.errors = errors


def validate(model: type[BaseModel], data: dict, t: Translator) -> BaseModel:
    """`model` validated from form strings (numbers converted), or FormInvalid."""
    values = {name: data.get(name) for name in model.model_fields if data.get(name) not in
              (None, "")}
    try:
        return model.model_validate(values, strict=False)
    except ValidationError as exc:
        raise FormInvalid(field_errors(exc.errors(), t)) from exc


def field_errors(errors: list[dict], t: Translator) -> dict[str, str]:
    out: dict[str, str] = {}
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        if len(loc) > 1 and loc[0] in {"body", "query"}:  # an upstream's request location
            loc = loc[1:]
        field = loc[0] if loc else "form"
        ctx = err.get("ctx") or {}
        key = _MESSAGES.get(str(err.get("type")))
        if key:
            out.setdefault(field, t(key, min=ctx.get("min_length", ctx.get("ge", "")),
                                    max=ctx.get("max_length", ctx.get("le", ""))))
        else:
            out.setdefault(field, str(err.get("msg", "")))
    return out


def upstream_errors(exc: AppError, t: Translator, default_field: str = "form") -> dict[str, str]:
    """A refused call's 400 details as field messages; anything else as a form-level message."""
    if exc.status == 400 and isinstance(exc.details, list):
        errors = field_errors(exc.details, t)
        if errors:
            return errors
    if isinstance(exc.details, dict) and isinstance(exc.details.get("field"), str):
        return {exc.details["field"]: exc.message}
    return {default_field: exc.message}


def refusal_errors(exc: AppError, t: Translator, default_field: str = "form", *,
                   raise_not_found: bool = False) -> dict[str, str]:
    """A submitted form's refusal by the upstream, as `upstream_errors` shows it; a server
    error is raised again (the error page), and so is a 404 with `raise_not_found` (the
    record the page is about is gone)."""
    if exc.status >= 500 or (raise_not_found and exc.status == 404):
        raise exc
    return upstream_errors(exc, t, default_field)


def password_errors(exc: AppError, t: Translator) -> dict[str, str]:
    """A refused new password (security.password_problem) as a message next to its field."""
    details = exc.details if isinstance(exc.details, dict) else {}
    key = f"password.{details.get('reason')}"
    if isinstance(details.get("field"), str) and key in t.messages:
        return {details["field"]: t(key)}
    return upstream_errors(exc, t)


class PasswordForm(BaseModel):
    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=10, max_length=256)

