"""`/api/v1/admin/broadcasts` and the admin panel's `/admin/broadcasts`: ADMIN only, bodies
checked before the telegram service is called (URL buttons http and https only), every
mutation audited with its outcome, the service's 409 passed on in the error shape. The real
gateway app with real sessions, its clients calling real HTTP servers for the services
(fake_services.py)."""

from __future__ import annotations

import json

import pytest

from .test_servers import audit, signed_in

NOW = "2026-12-01T12:00:00+00:00"
BID = "0123456789abcdef0123456789abcdef"
BROADCAST = {"id": BID, "status": "DRAFT", "segment": "active", "text_en": "Hello",
             "text_ru": "Привет", "buttons": [{"text": "Open", "url": "https://vpn.example"}],
             "total": 0, "sent": 0, "failed": 0, "blocked_by_user": 0, "resent": 0,
             "planned": False, "held_until": None, "created_by": "admin", "created_at": NOW,
             "started_at": None, "finished_at": None}
BODY = {"text_en": "Hello", "text_ru": "Привет", "segment": "active",
        "buttons": [{"text": "Open", "url": "https://vpn.example"}]}
PATH = "/internal/admin/broadcasts"
JSON = {"Content-Type": "application/json"}  # a cookie-signed write is JSON or carries CSRF


@pytest.fixture
async def admin(db, redis, gateway_settings, services):
    services.set("telegram", "GET", PATH, 200, {"broadcasts": [BROADCAST]})
    services.set("telegram", "POST", PATH, 201, {"broadcast": BROADCAST})
    services.set("telegram", "GET", f"{PATH}/[0-9a-f]+", 200, {"broadcast": BROADCAST})
    services.set("telegram", "POST", f"{PATH}/[0-9a-f]+/preview", 200,
                 {"sent": True, "telegram_user_id": 42, "language": "ru"})
    services.set("telegram", "POST", f"{PATH}/[0-9a-f]+/(send|resume)", 200,
                 {"broadcast": {**BROADCAST, "status": "SENDING", "started_at": NOW}})
    client = await signed_in(db, gateway_settings, "ADMIN")
    yield client
    await client.aclose()
    await client.app.state.clients.close()
    await client.app.state.db.dispose()


def sent(services) -> list[tuple[str, str, dict | None]]:
    return [(c.method, c.path, json.loads(c.body) if c.body else None) for c in services.calls
            if c.service == "telegram" and c.path.startswith(PATH)]


async def test_the_api_creates_previews_and_sends_and_audits_each(admin, services, pg):
    r = await admin.post("/api/v1/admin/broadcasts", json=BODY)
    assert r.status_code == 201 and r.json()["broadcast"]["status"] == "DRAFT", r.text
    assert sent(services)[-1] == ("POST", PATH, BODY)
    r = await admin.post(f"/api/v1/admin/broadcasts/{BID}/preview", json={"telegram_user_id": 42})
    assert r.status_code == 200 and r.json()["language"] == "ru"
    r = await admin.post(f"/api/v1/admin/broadcasts/{BID}/send", headers=JSON)
    assert r.status_code == 200 and r.json()["broadcast"]["status"] == "SENDING"
    r = await admin.get(f"/api/v1/admin/broadcasts/{BID}")
    assert r.status_code == 200 and {"status", "total", "sent", "failed", "blocked_by_user",
                                     "started_at", "finished_at"} <= set(r.json()["broadcast"])
    assert (await admin.get("/api/v1/admin/broadcasts")).json()["broadcasts"][0]["id"] == BID
    created = await audit(pg, "broadcast.create")
    assert created[-1]["outcome"] == "success"
    assert json.loads(created[-1]["d"]) == {"segment": "active", "buttons": 1,
                                            "broadcast_id": BID}
    assert (await audit(pg, "broadcast.preview"))[-1]["target_id"] == BID
    assert (await audit(pg, "broadcast.send"))[-1]["outcome"] == "success"


async def test_an_illegal_transition_is_the_services_409_and_audited_as_refused(
        admin, services, pg):
    services.set("telegram", "POST", f"{PATH}/[0-9a-f]+/pause", 409, {
        "code": "CONFLICT", "message": "A DRAFT broadcast cannot pause",
        "details": {"status": "DRAFT", "action": "pause", "allowed_from": ["SENDING"]}})
    r = await admin.post(f"/api/v1/admin/broadcasts/{BID}/pause", headers=JSON)
    assert r.status_code == 409 and r.json()["code"] == "CONFLICT"
    assert r.json()["details"]["status"] == "DRAFT"
    assert (await audit(pg, "broadcast.pause"))[-1]["outcome"] == "refused:409"
    r = await admin.post(f"/api/v1/admin/broadcasts/{BID}/explode", headers=JSON)
    assert r.status_code in (400, 404)


@pytest.mark.parametrize("change", [
    {"buttons": [{"text": "Go", "url": "javascript:alert(1)"}]},
    {"buttons": [{"text": "Go", "url": "tg://resolve?domain=x"}]},
    {"buttons": [{"text": "Go", "url": "https://"}]},
    {"buttons": [{"text": " ", "url": "https://vpn.example"}]},
    {"buttons": [{"text": "Go", "url": "https://vpn.example"}] * 7},
    {"segment": "everyone"},
    {"text_ru": "   "},
    {"text_en": "x" * 4097},
    {"text_en": "😀" * 2049},  # 4098 UTF-16 code units
    {"extra": 1},
])
async def test_bad_bodies_are_refused_before_the_service(admin, services, change):
    r = await admin.post("/api/v1/admin/broadcasts", json={**BODY, **change})
    assert r.status_code == 400 and r.json()["code"] == "VALIDATION_ERROR", r.text
    assert sent(services) == []


async def test_bad_ids_and_previews_are_refused(admin, services):
    assert (await admin.get("/api/v1/admin/broadcasts/not-an-id")).status_code in (400, 404)
    for body in ({"telegram_user_id": 0}, {"telegram_user_id": "42"}, {}):
        r = await admin.post(f"/api/v1/admin/broadcasts/{BID}/preview", json=body)
        assert r.status_code == 400, body
    assert sent(services) == []


async def test_only_an_admin_reaches_broadcasts(db, redis, gateway_settings, services):
    support = await signed_in(db, gateway_settings, "SUPPORT")
    try:
        assert (await support.get("/api/v1/admin/broadcasts")).status_code == 403
        assert (await support.post("/api/v1/admin/broadcasts", json=BODY)).status_code == 403
        assert (await support.post(f"/api/v1/admin/broadcasts/{BID}/send",
                                    headers=JSON)).status_code == 403
        assert (await support.get("/admin/broadcasts")).status_code == 403
    finally:
        await support.aclose()
        await support.app.state.clients.close()
        await support.app.state.db.dispose()
    assert sent(services) == []


async def test_the_panel_creates_shows_progress_and_sends(admin, services, pg):
    page = await admin.get("/admin/broadcasts")
    assert page.status_code == 200 and f'data-broadcast="{BID}"' in page.text
    r = await admin.post("/admin/broadcasts", data={
        "csrf_token": admin.csrf, "text_en": "Hello", "text_ru": "Привет", "segment": "active",
        "button_text_1": "Open", "button_url_1": "https://vpn.example"})
    assert r.status_code == 303 and r.headers["location"].startswith(f"/admin/broadcasts/{BID}")
    assert sent(services)[-1] == ("POST", PATH, BODY)
    bad = await admin.post("/admin/broadcasts", data={
        "csrf_token": admin.csrf, "text_en": "Hello", "text_ru": "Привет", "segment": "active",
        "button_text_2": "Bad", "button_url_2": "javascript:alert(1)"})
    assert bad.status_code == 400
    assert 'id="f-button_url_2" name="button_url_2" type="url"' in bad.text
    assert 'aria-invalid="true"' in bad.text
    page = await admin.get(f"/admin/broadcasts/{BID}")
    assert page.status_code == 200 and 'data-testid="broadcast-bar"' in page.text
    assert f'action="/admin/broadcasts/{BID}/send"' in page.text
    services.set("telegram", "GET", f"{PATH}/[0-9a-f]+", 200, {"broadcast": {
        **BROADCAST, "status": "SENDING", "total": 10, "sent": 4, "planned": True}})
    bar = await admin.get(f"/admin/broadcasts/{BID}/progress")
    assert 'value="4"' in bar.text and 'max="10"' in bar.text
    assert 'hx-trigger="every 2s"' in bar.text
    r = await admin.post(f"/admin/broadcasts/{BID}/send", data={"csrf_token": admin.csrf})
    assert r.status_code == 303 and r.headers["location"].endswith("done=broadcast_send")
    assert (await audit(pg, "broadcast.send"))[-1]["outcome"] == "success"
    ru = await admin.get(f"/admin/broadcasts/{BID}", headers={"Accept-Language": "ru"})
    assert "Ход рассылки" in ru.text and "Отправить пробное" in ru.text
