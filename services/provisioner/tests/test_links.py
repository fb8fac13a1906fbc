"""The stable subscription link on a real database and Redis: a token made with the
subscription, rotated and revoked (a rotated or revoked token is 404 at once, cached or not),
the content served from whichever server holds the access now (a Marzban panel's own
subscription with its headers, a key-only backend's key with ours), 503 with Retry-After while
the server is away, and the public locations."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from contracts.public.servers import ServerCreate, ServerUpdate
from fakes.marzban import create_app as marzban_app
from provisioner.links import LinkService, token_hash
from provisioner.models import Subscription
from provisioner.servers import ServerPool
from provisioner.service import ProvisioningService
from runtime.errors import NotFound, ServiceUnavailable
from runtime.identity import Identity
from runtime.testing import serve_in_thread
from runtime.testing import test_slot as slot_number

from .conftest import paid

NOW = datetime.now(UTC).replace(microsecond=0)




@pytest.fixture(scope="module")
def marzban():
    app = marzban_app(admin_username="admin", admin_password="pw", review_interval=None)
    with serve_in_thread(app, lifespan="off") as url:
        yield app.state.marzban, url


@pytest.fixture
def settings(unit_settings):
    return unit_settings.model_copy(update={
        "redis_url": f"redis://127.0.0.1:6379/{1 + slot_number()}",
        "jobs_prefix": f"test-{uuid.uuid4().hex}", "app_base_url": "https://vpn.example.test"})


@pytest.fixture
def service(backend, pool):
    return ProvisioningService(backend, pool=pool)


@pytest.fixture
async def links(db, settings, pool, backend):
    svc = LinkService(settings, db, pool, backend)
    yield svc
    keys = [k async for k in svc.redis.scan_iter(f"{svc.prefix}:*")]
    if keys:
        await svc.redis.delete(*keys)
    await svc.close()


async def subscribe(db, service, user_id: str = "u1") -> Subscription:
    async with db.transaction() as s:
        result = await service.record_and_apply(s, paid(user_id, NOW), NOW)
    assert result.outcome == "activated"
    async with db.transaction() as s:
        return (await s.execute(sa.select(Subscription).where(
            Subscription.user_id == user_id))).scalar_one()


def key_of(body: bytes) -> str:
    return base64.b64decode(body).decode().strip()


async def test_a_new_subscription_has_a_token_and_the_link_serves_its_key(db, service, links):
    sub = await subscribe(db, service)
    assert len(sub.link_token) == 43 and sub.link_hash == token_hash(sub.link_token)
    view = links.view(sub.link_token)
    assert view["subscription_url"] == f"https://vpn.example.test/api/v1/sub/{sub.link_token}"
    apps = {a["id"]: a for a in view["apps"]}
    assert {"happ", "streisand", "v2rayng", "hiddify", "shadowrocket", "clash-meta"} <= set(apps)
    assert apps["happ"]["import_url"] == f"happ://add/{view['subscription_url']}"
    assert apps["v2rayng"]["import_url"].startswith("v2rayng://install-config?url=https%3A%2F%2F")
    assert apps["happ"]["open_url"] == (
        f"https://vpn.example.test/import/happ/{sub.link_token}")

    out = await links.content(sub.link_token)
    assert key_of(out.body).startswith("ss://") and out.media_type.startswith("text/plain")
    expire = int(sub.expires_at.timestamp())
    assert out.headers["subscription-userinfo"] == (
        f"upload=0; download=0; total=0; expire={expire}")
    assert out.headers["profile-update-interval"] == "12"
    assert out.headers["content-disposition"] == 'attachment; filename="VPN"'


async def test_rotation_and_revocation_refuse_the_old_token_at_once_even_cached(db, service,
                                                                                links):
    sub = await subscribe(db, service)
    old = sub.link_token
    first = await links.content(old)  # now cached
    assert await links.redis.get(links._key(token_hash(old), sub.server_id)) is not None
    async with db.transaction() as s:
        view = await links.rotate(s, sub.id, Identity("u1", "USER"))
    new = view["subscription_url"].rsplit("/", 1)[1]
    assert new != old
    assert await links.redis.get(links._key(token_hash(old), sub.server_id)) is None
    with pytest.raises(NotFound) as unknown:
        await links.content(old)
    assert (await links.content(new)).body == first.body

    async with db.transaction() as s:  # by support: no owner check
        await links.revoke(s, sub.id, None)
    with pytest.raises(NotFound) as revoked:
        await links.content(new)
    assert revoked.value.message == unknown.value.message  # one answer for both
    for bad in ("x" * 43, "short", "../" * 20):
        with pytest.raises(NotFound):
            await links.content(bad)
    async with db.transaction() as s:
        await links.revoke(s, sub.id, None)  # again: nothing to do
        assert (await s.get(Subscription, sub.id)).link_token is None
    async with db.transaction() as s:  # a revoked link is made again by a rotation
        again = await links.rotate(s, sub.id, Identity("u1", "USER"))
    assert (await links.content(again["subscription_url"].rsplit("/", 1)[1])).body


async def test_only_the_owner_may_rotate_or_revoke(db, service, links):
    sub = await subscribe(db, service)
    for change in (links.rotate, links.revoke):
        with pytest.raises(NotFound):
            async with db.transaction() as s:
                await change(s, sub.id, Identity("someone-else", "USER"))
    async with db.transaction() as s:
        assert (await s.get(Subscription, sub.id)).link_token == sub.link_token
    with pytest.raises(NotFound):
        async with db.transaction() as s:
            await links.rotate(s, "no-such-subscription", None)


async def test_the_link_serves_the_panel_of_the_server_holding_the_access_now(
        db, settings, backend, marzban, faults):
    state, url = marzban
    state.users.clear()
    # Only the Marzban server has room: the new subscription goes there.
    pool = ServerPool(db, settings.model_copy(update={"seed_server_capacity": 0}), backend)
    links = LinkService(settings, db, pool, backend)
    service = ProvisioningService(backend, pool=pool)
    try:
        async with db.transaction() as s:
            panel = await pool.create(s, ServerCreate(
                name="nl-1", location="nl-ams", backend="marzban", base_url=url,
                credentials={"username": "admin", "password": "pw"}, capacity=10))
        sub = await subscribe(db, service, "u-move")
        assert sub.server_id == panel["id"]
        out = await links.content(sub.link_token)
        user = state.users[sub.provision_ref]
        assert out.headers["subscription-userinfo"] == (
            f"upload=0; download=0; total={user.data_limit or 0}; expire={user.expire}")
        assert out.headers["content-disposition"] == (
            f'attachment; filename="{sub.provision_ref}"')  # as the panel serves it
        assert out.headers["profile-update-interval"] == "12"  # the panel sends none: ours
        assert base64.b64decode(out.body).decode().startswith("vless://")

        # The access moves to the seeded sandbox server: the same link serves it at once,
        # though the panel's answer is still cached under the old server.
        seeded = await pool.seed()
        await backend.ensure_active(sub.provision_ref, expires_at=NOW + timedelta(days=30),
                                    max_devices=3)
        async with db.transaction() as s:
            (await s.get(Subscription, sub.id)).server_id = seeded
        moved = await links.content(sub.link_token)
        assert key_of(moved.body).startswith("ss://")

        # The server away: 503 with Retry-After, never a 5xx of another kind.
        uncached = LinkService(settings.model_copy(update={"sub_link_cache_seconds": 0}), db,
                               pool, backend)
        await faults.add("access", message="sandbox down")
        with pytest.raises(ServiceUnavailable) as away:
            await uncached.content(sub.link_token)
        assert away.value.headers["Retry-After"] == "30"
        assert (await links.content(sub.link_token)).body == moved.body  # cached meanwhile
        state.users.clear()  # the panel lost the account: "being set up", still a 503
        async with db.transaction() as s:
            (await s.get(Subscription, sub.id)).server_id = panel["id"]
        with pytest.raises(ServiceUnavailable):
            await uncached.content(sub.link_token)
        # Its credentials unreadable (SERVER_CREDENTIALS_KEY changed): a 503 too, not a 500.
        async with db.transaction() as s:
            await s.execute(sa.text("UPDATE provisioning.servers SET credentials = 'garbage', "
                                    "updated_at = now() WHERE id = :id"), {"id": panel["id"]})
        with pytest.raises(ServiceUnavailable):
            await uncached.content(sub.link_token)
        await uncached.close()
    finally:
        keys = [k async for k in links.redis.scan_iter(f"{links.prefix}:*")]
        if keys:
            await links.redis.delete(*keys)
        await links.close()
        await pool.close()


async def test_locations_are_those_with_a_server_taking_customers(db, settings, backend):
    pool = ServerPool(db, settings.model_copy(update={"seed_server_capacity": 0}), backend)
    links = LinkService(settings.model_copy(update={"location_names": {"de-fra": "Frankfurt"}}),
                        db, pool, backend)
    try:
        async with db.transaction() as s:
            for name, location, capacity in (("de-1", "de-fra", 5), ("nl-1", "nl-ams", 5),
                                             ("fi-1", "fi-hel", 0), ("us-1", "us-nyc", 5),
                                             ("x-1", "lab", 5)):
                await pool.create(s, ServerCreate(name=name, location=location,
                                                  backend="sandbox", capacity=capacity))
            servers = {x["name"]: x["id"] for x in await pool.list(s)}
            await pool.update(s, servers["us-1"], ServerUpdate(status="DRAINING"))
        async with db.transaction() as s:
            await s.execute(sa.text("UPDATE provisioning.servers SET healthy = false "
                                    "WHERE name = 'nl-1'"))
        async with db.transaction() as s:
            out = await links.locations(s)
        assert out == [{"id": "de-fra", "name": "Frankfurt", "country": "DE"},
                       {"id": "lab", "name": "lab", "country": None}]
    finally:
        await links.close()
        await pool.close()
