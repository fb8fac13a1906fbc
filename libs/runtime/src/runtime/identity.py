"""The short-lived signed identity header the gateway sends and every service verifies.

The header is `base64url(json).hex(hmac)`, signed with a key derived from `INTERNAL_SIGNING_KEY`
for this purpose only. Its claims: `sub` (user id), `role`, `aud` (the service it is meant for)
and `exp` (at most `MAX_TTL_SECONDS` ahead), so a header captured at one service cannot be
replayed at another or kept for later.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

import orjson

from runtime.errors import Forbidden, Unauthenticated
from runtime.keys import IDENTITY_HEADER, derive_key

HEADER = "X-Internal-Identity"
TTL_SECONDS = 60
MAX_TTL_SECONDS = 60
# Tolerated clock difference between the gateway and a service.
CLOCK_SKEW_SECONDS = 5


@dataclass(frozen=True)
class Identity:
    user_id: str
    role: str

    @property
    def is_staff(self) -> bool:
        return self.role in {"SUPPORT", "ADMIN"}

    @property
    def is_admin(self) -> bool:
        return self.role == "ADMIN"


def _sig(key: str, data: bytes) -> str:
    return hmac.new(derive_key(key, IDENTITY_HEADER), data, hashlib.sha256).hexdigest()


def sign(key: str, user_id: str, role: str, *, audience: str, ttl: int = TTL_SECONDS) -> str:
    """A header for `audience` (the target service's name); `key` is INTERNAL_SIGNING_KEY."""
    if not 0 < ttl <= MAX_TTL_SECONDS:
        raise ValueError(f"ttl must be 1..{MAX_TTL_SECONDS} seconds")
    if not audience:
        raise ValueError("an audience is required")
    body = base64.urlsafe_b64encode(orjson.dumps(
        {"sub": user_id, "role": role, "aud": audience, "exp": int(time.time()) + ttl}
    )).rstrip(b"=")
    return f"{body.decode()}.{_sig(key, body)}"


def _claim(data: dict, name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise Unauthenticated(f"Internal identity without {name}")
    return value


def verify(key: str, header: str | None, *, audience: str) -> Identity:
    """The caller named by a header meant for `audience`; 401 for anything else."""
    if not header or "." not in header:
        raise Unauthenticated("Missing internal identity")
    body, sig = header.rsplit(".", 1)
    if not hmac.compare_digest(_sig(key, body.encode()), sig):
        raise Unauthenticated("Bad internal identity signature")
    try:
        data = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except Exception as exc:
        raise Unauthenticated("Malformed internal identity") from exc
    if not isinstance(data, dict):
        raise Unauthenticated("Malformed internal identity")
    if data.get("aud") != audience:
        raise Unauthenticated("Internal identity meant for another service")
    exp, now = data.get("exp"), time.time()
    if not isinstance(exp, int) or isinstance(exp, bool) or exp < now:
        raise Unauthenticated("Expired internal identity")
    if exp > now + MAX_TTL_SECONDS + CLOCK_SKEW_SECONDS:
        raise Unauthenticated("Internal identity lives too long")
    return Identity(user_id=_claim(data, "sub"), role=_claim(data, "role"))


def require_staff(identity: Identity) -> None:
    if not identity.is_staff:
        raise Forbidden()


def require_admin(identity: Identity) -> None:
    if not identity.is_admin:
        raise Forbidden()
