"""Passwords (argon2id, and the rules a new one must pass), session tokens (random, stored
hashed) and CSRF tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from runtime.keys import CSRF, derive_key

_hasher = PasswordHasher()  # argon2id with the library's recommended parameters
# Verified against when the email is unknown, so both failures take the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def new_session_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _csrf(key: str, label: bytes, value: str) -> str:
    # `key` is INTERNAL_SIGNING_KEY; CSRF tokens use their own derived key (runtime.keys).
    return hmac.new(derive_key(key, CSRF), label + value.encode(), hashlib.sha256).hexdigest()


def csrf_token(key: str, session_token: str) -> str:
    """A CSRF token bound to the session (HMAC of its token), for browser form posts."""
    return _csrf(key, b"csrf:session:", session_token)


def csrf_valid(key: str, session_token: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(csrf_token(key, session_token), given or "")


def anon_csrf_token(key: str, anon: str) -> str:
    """A CSRF token for a visitor without a session, bound to their anonymous cookie; a label
    apart from session tokens, so neither kind ever verifies as the other."""
    return _csrf(key, b"csrf:anon:", anon)


def anon_csrf_valid(key: str, anon: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(anon_csrf_token(key, anon), given or "")


MIN_PASSWORD_LENGTH = 10


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """zxcvbn's ranked list of the 30,000 most common passwords (from leaked password sets)."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS  # ~0.1 s, once, at the first check

    return frozenset(FREQUENCY_LISTS["passwords"])


def password_problem(password: str, email: str | None) -> tuple[str, str] | None:
    """(reason, message) when `password` may not be used for the account `email`, else None.

    Compared case-insensitively, and also with whitespace removed, so "Pass Word 1234" is as
    common as "password1234".
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        return "too_short", f"The password must be at least {MIN_PASSWORD_LENGTH} characters long"
    variants = {password.casefold(), "".join(password.casefold().split())}
    if email:
        address = email.strip().casefold()
        if variants & {address, address.rsplit("@", 1)[0]}:
            return "email", "The password must not be your email address or its name part"
    if variants & common_passwords():
        return "common", ("This password is one of the most common ones, which attackers try "
                          "first: choose another")
    return None
