"""The input guard in `runtime.http`: NUL characters and lone surrogates are a 400, unparsed."""

from __future__ import annotations

import httpx
import pytest
from pydantic import BaseModel

from runtime.http import body_problem, create_app


class Body(BaseModel):
    text: str


def _app(exempt: frozenset[str] = frozenset()):
    app = create_app("t", readiness={}, max_body=4096, input_guard_exempt=exempt)
    seen: list[str] = []

    @app.post("/echo")
    async def echo(body: Body):
        seen.append(body.text)
        return {"text": body.text}

    @app.get("/items/{item_id}")
    async def item(item_id: str, q: str | None = None):
        return {"id": item_id, "q": q}

    @app.post("/hook")
    async def hook(body: Body):
        seen.append(body.text)
        return {"ok": True}

    app.state.seen = seen
    return app


async def _call(app, method: str, url: str, **kwargs) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        return await c.request(method, url, **kwargs)


def _json(text_literal: str) -> bytes:
    """A JSON body whose `text` is the given JSON string literal content, verbatim."""
    return b'{"text": "' + text_literal.encode() + b'"}'


@pytest.mark.parametrize("literal", [r"a\u0000b", r"\ud800", r"x\udfff", r"\ud83d", r"\udc00\ud800",
                                     r"\ud83d\u0041", r"\uD800", r"\\\ud800"])
async def test_nul_and_lone_surrogates_in_json_are_a_400(literal):
    app = _app()
    r = await _call(app, "POST", "/echo", content=_json(literal),
                    headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "VALIDATION_ERROR" and body["message"] and body["details"]
    assert app.state.seen == []


@pytest.mark.parametrize("literal", [r"\ud83d\ude00", r"caf\u00e9", r"\\ud800", r"\\u0000",
                                     "plain %00 text"])
async def test_valid_pairs_escaped_backslashes_and_percent_text_pass(literal):
    app = _app()
    r = await _call(app, "POST", "/echo", content=_json(literal),
                    headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert "\x00" not in r.json()["text"]


async def test_a_body_without_content_type_is_checked_as_json():
    r = await _call(_app(), "POST", "/echo", content=_json(r"\u0000"))
    assert r.status_code == 400 and r.json()["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize("url", ["/items/%00", "/items/a%00b", "/items/x?q=%00",
                                 "/items/x?q=a%00&z=1"])
async def test_nul_in_path_or_query_is_a_400(url):
    r = await _call(_app(), "GET", url)
    assert r.status_code == 400 and r.json()["code"] == "VALIDATION_ERROR"
    assert "x-request-id" in r.headers


async def test_nul_in_a_form_post_is_a_400():
    r = await _call(_app(), "POST", "/echo", content=b"text=a%00b",
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400 and r.json()["code"] == "VALIDATION_ERROR"


async def test_an_exempt_path_gets_the_body_unguarded():
    app = _app(frozenset({"/hook"}))
    r = await _call(app, "POST", "/hook", content=_json(r"a\u0000b"),
                    headers={"content-type": "application/json"})
    assert r.status_code == 200 and app.state.seen == ["a\x00b"]
    r = await _call(app, "POST", "/echo", content=_json(r"a\u0000b"),
                    headers={"content-type": "application/json"})
    assert r.status_code == 400


def test_body_problem_leaves_other_content_types_to_their_parsers():
    assert body_problem(rb'{"a": "\ud800"}', b"application/json; charset=utf-8")
    assert body_problem(rb'{"a": "\ud800"}', b"application/merge-patch+json")
    assert body_problem(rb"\ud800", b"text/plain") is None
    assert body_problem(b"a\x00b", b"text/plain")
    assert body_problem(b"%00", b"text/plain") is None
