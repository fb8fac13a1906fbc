"""`python -m gateway api|worker|migrate|bootstrap|create-admin|verify-audit`."""

from __future__ import annotations

import argparse
import getpass
import os

from gateway import retention
from gateway.app import create_api
from gateway.config import Settings
from gateway.repository import UserRepository
from gateway.service import AuthService, audit_service, check_new_password, user_admin_service
from gateway.worker import build_worker
from runtime.db import Database
from runtime.errors import ValidationFailed
from runtime.logging import get_logger
from runtime.service import ServiceDefinition, run_cli

log = get_logger("gateway")


async def create_admin(settings: Settings, args: list[str]) -> int:
    """Create an ADMIN account, or promote (and unblock) an existing one, audited; the password
    of a new account comes from ADMIN_PASSWORD and must pass the same rules as a sign-up."""
    p = argparse.ArgumentParser(prog="create-admin")
    p.add_argument("email")
    ns = p.parse_args(args)
    db = Database(settings)
    try:
        async with db.transaction() as s:
            user = await UserRepository(s).by_email(ns.email)
            if user is None:
                password = os.environ.get("ADMIN_PASSWORD") or getpass.getpass("Password: ")
                try:
                    check_new_password(password, ns.email)
                except ValidationFailed as exc:
                    log.error("password_refused", reason=exc.details["reason"],
                              message=exc.message)
                    return 2
                user = (await AuthService(settings.session_ttl_days, None).register(
                    s, ns.email, password, None, "cli")).user
            changes = await user_admin_service.make_admin(s, user)
        log.info("admin_ready", user_id=user.id, changes=changes)
        return 0
    finally:
        await db.dispose()


async def verify_audit(settings: Settings, args: list[str]) -> int:
    """Verify the audit log's hash chain; exit 1 at the first entry that was altered."""
    db = Database(settings)
    try:
        async with db.transaction() as s:
            ok, count, broken = await audit_service.verify(s)
    finally:
        await db.dispose()
    if ok:
        log.info("audit_chain_ok", entries=count)
        return 0
    log.error("audit_chain_broken", entries_checked=count, first_broken_id=broken)
    return 1


definition = ServiceDefinition(name="gateway", settings_factory=Settings, create_api=create_api,
                               build_worker=build_worker, retention=retention.rules,
                               commands={"create-admin": create_admin,
                                         "verify-audit": verify_audit})

if __name__ == "__main__":
    run_cli(definition)
