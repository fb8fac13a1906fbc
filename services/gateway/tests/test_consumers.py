"""The gateway's one consumer: a Telegram account link is projected onto the user (what
`GET /auth/me` shows) once, however often the event is delivered."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway_tests_factories import add_user

from contracts import make_envelope
from contracts.telegram import AccountLinkedV1
from gateway.consumers import build_subscription


async def test_a_link_is_projected_once_per_event(db, pg):
    uid = await add_user(db)
    handle = build_subscription(db).handlers[AccountLinkedV1.routing_key()]
    event = AccountLinkedV1(user_id=uid, telegram_user_id=42, telegram_username="ann",
                            linked_at=datetime.now(UTC))
    env = make_envelope(event, producer="telegram")
    await handle(env, event)
    row = await pg.fetchrow("SELECT telegram_linked, telegram_username FROM identity.users "
                            "WHERE id = $1", uid)
    assert (row["telegram_linked"], row["telegram_username"]) == (True, "ann")
    # the same delivery again, after the user changed: nothing is applied twice
    await pg.execute("UPDATE identity.users SET telegram_username = 'later' WHERE id = $1", uid)
    await handle(env, event)
    assert await pg.fetchval("SELECT telegram_username FROM identity.users WHERE id = $1",
                             uid) == "later"
    assert await pg.fetchval("SELECT count(*) FROM identity.inbox WHERE event_id = $1",
                             env.event_id) == 1


async def test_a_moved_link_leaves_the_account_it_came_from(db, pg):
    made_by_bot, web = await add_user(db), await add_user(db)
    handle = build_subscription(db).handlers[AccountLinkedV1.routing_key()]
    tg = 4200000 + int(datetime.now(UTC).timestamp()) % 100000
    for uid in (made_by_bot, web):  # first the account /start made, then the web account's
        event = AccountLinkedV1(user_id=uid, telegram_user_id=tg, telegram_username="ann",
                                linked_at=datetime.now(UTC))
        await handle(make_envelope(event, producer="telegram"), event)
    rows = {r["id"]: (r["telegram_linked"], r["telegram_id"]) for r in await pg.fetch(
        "SELECT id, telegram_linked, telegram_id FROM identity.users WHERE id = ANY($1)",
        [made_by_bot, web])}
    assert rows == {made_by_bot: (False, None), web: (True, tg)}
