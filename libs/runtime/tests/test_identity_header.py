"""The signed identity header: valid, tampered, expired, wrong key, audience, lifetime, claims."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import orjson
import pytest

from runtime import identity
from runtime.errors import Unauthenticated
from runtime.keys import CSRF, IDENTITY_HEADER, derive_key, hkdf_sha256

KEY = "test-key"
AUD = "tickets"


def _forge(claims: dict, key: str = KEY) -> str:
    """A header with arbitrary claims, signed exactly as `identity.sign` signs."""
    body = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=")
    sig = hmac.new(derive_key(key, IDENTITY_HEADER), body, hashlib.sha256).hexdigest()
    return f"{body.decode()}.{sig}"


def test_round_trip():
    ident = identity.verify(KEY, identity.sign(KEY, "u1", "ADMIN", audience=AUD), audience=AUD)
    assert ident.user_id == "u1" and ident.is_admin and ident.is_staff


@pytest.mark.parametrize("header", [None, "", "garbage", "a.b"])
def test_malformed_is_refused(header):
    with pytest.raises(Unauthenticated):
        identity.verify(KEY, header, audience=AUD)


def test_tampered_role_is_refused():
    body, sig = identity.sign(KEY, "u1", "USER", audience=AUD).rsplit(".", 1)
    forged = identity.sign(KEY, "u1", "ADMIN", audience=AUD).rsplit(".", 1)[0]
    with pytest.raises(Unauthenticated):
        identity.verify(KEY, f"{forged}.{sig}", audience=AUD)


def test_wrong_key_and_expiry_are_refused(monkeypatch):
    with pytest.raises(Unauthenticated):
        identity.verify("other-key", identity.sign(KEY, "u1", "USER", audience=AUD), audience=AUD)
    header = identity.sign(KEY, "u1", "USER", audience=AUD, ttl=1)
    now = time.time()
    monkeypatch.setattr(identity.time, "time", lambda: now + 5)
    with pytest.raises(Unauthenticated):
        identity.verify(KEY, header, audience=AUD)


def test_a_header_for_one_service_is_refused_by_another():
    header = identity.sign(KEY, "u1", "ADMIN", audience="billing")
    assert identity.verify(KEY, header, audience="billing").user_id == "u1"
    with pytest.raises(Unauthenticated, match="another service"):
        identity.verify(KEY, header, audience="provisioner")


@pytest.mark.parametrize("aud", [None, "", ["tickets"]])
def test_a_missing_or_odd_audience_is_refused(aud):
    claims = {"sub": "u1", "role": "USER", "exp": int(time.time()) + 30}
    if aud is not None:
        claims["aud"] = aud
    with pytest.raises(Unauthenticated):
        identity.verify(KEY, _forge(claims), audience=AUD)


def test_an_exp_further_than_60_seconds_ahead_is_refused():
    now = int(time.time())
    ok = _forge({"sub": "u1", "role": "USER", "aud": AUD, "exp": now + 60})
    assert identity.verify(KEY, ok, audience=AUD).user_id == "u1"
    for exp in (now + 3600, 2**62, "soon", True):
        header = _forge({"sub": "u1", "role": "USER", "aud": AUD, "exp": exp})
        with pytest.raises(Unauthenticated):
            identity.verify(KEY, header, audience=AUD)


def test_sign_refuses_a_long_lifetime_or_no_audience():
    with pytest.raises(ValueError):
        identity.sign(KEY, "u1", "USER", audience=AUD, ttl=61)
    with pytest.raises(ValueError):
        identity.sign(KEY, "u1", "USER", audience="")


@pytest.mark.parametrize("claims", [
    {"role": "ADMIN"}, {"sub": "", "role": "ADMIN"}, {"sub": "u1"}, {"sub": 5, "role": "ADMIN"},
    {"sub": "u1", "role": None},
])
def test_a_signed_header_without_sub_or_role_is_a_401(claims):
    header = _forge({**claims, "aud": AUD, "exp": int(time.time()) + 30})
    with pytest.raises(Unauthenticated):
        identity.verify(KEY, header, audience=AUD)


def test_a_json_array_body_is_a_401_not_a_crash():
    with pytest.raises(Unauthenticated):
        identity.verify(KEY, _forge(["u1", "ADMIN"]), audience=AUD)  # type: ignore[arg-type]


def test_the_master_key_itself_no_longer_signs_headers():
    """A value HMAC'd with the raw INTERNAL_SIGNING_KEY (or the CSRF key) is not an identity."""
    claims = {"sub": "u1", "role": "ADMIN", "aud": AUD, "exp": int(time.time()) + 30}
    body = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=")
    for key in (KEY.encode(), derive_key(KEY, CSRF)):
        sig = hmac.new(key, body, hashlib.sha256).hexdigest()
        with pytest.raises(Unauthenticated):
            identity.verify(KEY, f"{body.decode()}.{sig}", audience=AUD)


def test_keys_differ_per_purpose_and_per_master():
    keys = {derive_key(KEY, IDENTITY_HEADER), derive_key(KEY, CSRF), derive_key("other", CSRF),
            KEY.encode()}
    assert len(keys) == 4
    assert all(len(k) == 32 for k in keys - {KEY.encode()})
    assert derive_key(KEY, CSRF) == derive_key(KEY, CSRF)


def test_hkdf_matches_rfc_5869_test_case_1():
    okm = hkdf_sha256(bytes.fromhex("0b" * 22), salt=bytes.fromhex("000102030405060708090a0b0c"),
                      info=bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"), length=42)
    assert okm.hex() == ("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                         "34007208d5b887185865")
