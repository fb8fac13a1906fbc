"""The web forms are validated with the public request models the API uses: form strings are
converted where the model wants numbers, every refusal becomes a message next to its field in
the page's language, and a service's own refusal (its 400 details, or a named field) lands next
to the field it is about."""

from __future__ import annotations

import pytest

from contracts.public.billing import PlanCreate, PlanUpdate
from contracts.public.tickets import TicketCreate
from gateway.web.forms import FormInvalid, upstream_errors, validate
from gateway.web.i18n import Translator
from runtime.errors import AppError, Conflict


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_a_plan_form_is_the_api_body_with_numbers_converted(lang):
    t = Translator(lang)
    body = validate(PlanCreate, {"name": "Year", "price_usd": "49.99", "duration_days": "365",
                                 "max_devices": "5", "description": ""}, t)
    assert body == PlanCreate(name="Year", price_usd="49.99", duration_days=365, max_devices=5)
    with pytest.raises(FormInvalid) as exc:
        validate(PlanCreate, {"name": "", "price_usd": "0", "duration_days": "0",
                              "max_devices": "x"}, t)
    errors = exc.value.errors
    assert set(errors) == {"name", "price_usd", "duration_days", "max_devices"}
    assert errors["name"] == t("form.required")
    assert all(errors.values())


def test_invisible_ticket_text_is_refused_on_the_form_as_on_the_api():
    t = Translator("en")
    with pytest.raises(FormInvalid) as exc:
        validate(TicketCreate, {"subject": "\u200b\u200b\u200b", "body": "ok"}, t)
    assert list(exc.value.errors) == ["subject"]


def test_an_empty_plan_change_is_refused_before_any_call():
    with pytest.raises(FormInvalid):
        validate(PlanUpdate, {}, Translator("en"))


def test_a_services_refusal_is_shown_next_to_its_field():
    t = Translator("en")
    details = [{"loc": ["body", "price_usd"], "type": "string_pattern_mismatch",
                "msg": "String should match pattern"}]
    assert list(upstream_errors(AppError("Invalid input", details, status=400), t)) == [
        "price_usd"]
    named = Conflict("Email already registered", {"field": "email"})
    assert upstream_errors(named, t) == {"email": "Email already registered"}
    assert upstream_errors(AppError("Not paid", status=409), t, "reason") == {
        "reason": "Not paid"}
