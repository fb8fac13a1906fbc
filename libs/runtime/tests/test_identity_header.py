"""The signed identity header: valid, tampered, expired, wrong key."""

from __future__ import annotations

import time

import pytest

from runtime import identity
from runtime.errors import Unauthenticated

KEY = "test-key"


def test_round_trip():
    ident = identity.verify(KEY, identity.sign(KEY, "u1", "ADMIN"))
    assert ident.user_id == "u1" and ident.is_admin and ident.is_staff


@pytest.mark.parametrize("header", [None, "", "garbage", "a.b"])
def test_malformed_is_refused(header):
    with pytest.raises(Unauthenticated):
        identity.verify(KEY, header)


def test_tampered_role_is_refused():
    body, sig = identity.sign(KEY, "u1", "USER").rsplit(".", 1)
    forged = identity.sign(KEY, "u1", "ADMIN").rsplit(".", 1)[0]
    with pytest.raises(Unauthenticated):
        identity.verify(KEY, f"{forged}.{sig}")


def test_wrong_key_and_expiry_are_refused(monkeypatch):
    with pytest.raises(Unauthenticated):
        identity.verify("other-key", identity.sign(KEY, "u1", "USER"))
    header = identity.sign(KEY, "u1", "USER", ttl=1)
    now = time.time()
    monkeypatch.setattr(identity.time, "time", lambda: now + 5)
    with pytest.raises(Unauthenticated):
        identity.verify(KEY, header)
