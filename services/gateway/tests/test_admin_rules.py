"""The identity service layer on a real database: no admin lockout (own role, own block, the
last active admin, two admins demoting each other at once), `create-admin` unblocking, and a
blocked user's sign-in creating no session."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import pytest
from gateway_tests_factories import PASSWORD, add_user

from gateway.models import User
from gateway.service import AuthService, user_admin_service
from runtime.errors import Conflict, Forbidden


@pytest.fixture(autouse=True)
async def no_admins(pg):
    """Every test starts with no active admin (earlier tests' admins become USERs)."""
    await pg.execute("UPDATE identity.users SET role = 'USER' WHERE role = 'ADMIN'")


async def role_of(pg, uid: str) -> str:
    return await pg.fetchval("SELECT role FROM identity.users WHERE id = $1", uid)


async def test_an_admin_cannot_change_their_own_role_or_block_themself(db, pg):
    a, _ = await add_user(db, "ADMIN"), await add_user(db, "ADMIN")
    for change in (lambda s: user_admin_service.set_role(s, a, "USER", a),
                   lambda s: user_admin_service.set_blocked(s, a, True, a)):
        with pytest.raises(Conflict) as exc:
            async with db.transaction() as s:
                await change(s)
        assert exc.value.status == 409 and exc.value.details == {"reason": "self"}
    assert await role_of(pg, a) == "ADMIN"


async def test_the_last_active_admin_is_never_demoted_or_blocked(db, pg):
    last = await add_user(db, "ADMIN")
    await add_user(db, "ADMIN", blocked=True)  # a blocked admin does not count
    support = await add_user(db, "SUPPORT")
    for change in (lambda s: user_admin_service.set_role(s, last, "SUPPORT", support),
                   lambda s: user_admin_service.set_blocked(s, last, True, support)):
        with pytest.raises(Conflict) as exc:
            async with db.transaction() as s:
                await change(s)
        assert exc.value.details == {"reason": "last_admin"}
    assert await role_of(pg, last) == "ADMIN"

    other = await add_user(db, "ADMIN")  # with a second one, either may go
    async with db.transaction() as s:
        await user_admin_service.set_role(s, last, "USER", other)
    assert await role_of(pg, last) == "USER"
    async with db.transaction() as s:  # promoting needs no second admin
        await user_admin_service.set_role(s, last, "ADMIN", other)


async def test_two_admins_demoting_each_other_at_once_leave_one_admin(db, pg):
    a, b = await add_user(db, "ADMIN"), await add_user(db, "ADMIN")
    first = db.sessions()
    await first.begin()
    await user_admin_service.set_role(first, b, "USER", a)  # holds the admins' row locks

    async def b_demotes_a():
        async with db.transaction() as s:
            await user_admin_service.set_role(s, a, "USER", b)

    second = asyncio.create_task(b_demotes_a())
    await asyncio.sleep(0.3)
    assert not second.done()  # waits for the first transaction's locks
    await first.commit()
    await first.close()
    with pytest.raises(Conflict) as exc:
        await second
    assert exc.value.details == {"reason": "last_admin"}
    assert (await role_of(pg, a), await role_of(pg, b)) == ("ADMIN", "USER")


async def test_make_admin_unblocks_and_audits(db, pg):
    uid = await add_user(db, "USER", blocked=True)
    async with db.transaction() as s:
        user = await s.get(User, uid)
        assert await user_admin_service.make_admin(s, user) == ["user.unblock", "user.role"]
    row = await pg.fetchrow("SELECT role, is_blocked FROM identity.users WHERE id = $1", uid)
    assert (row["role"], row["is_blocked"]) == ("ADMIN", False)
    audited = await pg.fetch("SELECT action, actor_id, outcome FROM identity.audit_log "
                             "WHERE target_id = $1 ORDER BY id", uid)
    assert [(r["action"], r["actor_id"], r["outcome"]) for r in audited] == [
        ("user.unblock", "cli", "success"), ("user.role", "cli", "success")]
    assert await pg.fetchval(
        "SELECT count(*) FROM identity.outbox WHERE routing_key = 'identity.user.unblocked.v1'"
        " AND envelope->'payload'->>'user_id' = $1", uid) == 1


async def test_a_blocked_user_with_the_right_password_gets_403_and_no_session(db, pg):
    uid = await add_user(db, "USER", blocked=True)
    auth = AuthService(30, None)
    with pytest.raises(Forbidden):
        async with db.transaction() as s:
            await auth.login(s, f"{uid}@example.com", PASSWORD, "127.0.0.1", "test")
    assert await pg.fetchval("SELECT count(*) FROM identity.sessions WHERE user_id = $1",
                             uid) == 0
    await pg.execute("UPDATE identity.users SET is_blocked = false WHERE id = $1", uid)
    async with db.transaction() as s:
        await auth.login(s, f"{uid}@example.com", PASSWORD, "127.0.0.1", "test")
    assert await pg.fetchval("SELECT count(*) FROM identity.sessions WHERE user_id = $1",
                             uid) == 1


def create_admin(url: str, email: str, password: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", "create-admin", email],
                          env={**os.environ, "DATABASE_URL": url,
                               "ADMIN_PASSWORD": password},
                          capture_output=True, text=True, timeout=60)


async def test_create_admin_command_refuses_weak_passwords_and_unblocks(db, pg, migrated):
    email = f"{uuid.uuid4().hex}@example.com"
    refused = await asyncio.to_thread(create_admin, migrated, email, "password1234")
    assert refused.returncode == 2 and "password_refused" in refused.stdout + refused.stderr
    assert await pg.fetchval("SELECT count(*) FROM identity.users WHERE email = $1", email) == 0

    uid = await add_user(db, "USER", blocked=True)
    done = await asyncio.to_thread(create_admin, migrated, f"{uid}@example.com", "")
    assert done.returncode == 0, done.stdout + done.stderr
    row = await pg.fetchrow("SELECT role, is_blocked FROM identity.users WHERE id = $1", uid)
    assert (row["role"], row["is_blocked"]) == ("ADMIN", False)
