"""The short-lived signed identity header the gateway sends and every service verifies."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

import orjson

from runtime.errors import Forbidden, Unauthenticated

HEADER = "X-Internal-Identity"
TTL_SECONDS = 60


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
    return hmac.new(key.encode(), data, hashlib.sha256).hexdigest()


def sign(key: str, user_id: str, role: str, ttl: int = TTL_SECONDS) -> str:
    body = base64.urlsafe_b64encode(
        orjson.dumps({"sub": user_id, "role": role, "exp": int(time.time()) + ttl})
    ).rstrip(b"=")
    return f"{body.decode()}.{_sig(key, body)}"


def verify(key: str, header: str | None) -> Identity:
    if not header or "." not in header:
        raise Unauthenticated("Missing internal identity")
    body, sig = header.rsplit(".", 1)
    if not hmac.compare_digest(_sig(key, body.encode()), sig):
        raise Unauthenticated("Bad internal identity signature")
    try:
        data = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except Exception as exc:
        raise Unauthenticated("Malformed internal identity") from exc
    if int(data.get("exp", 0)) < time.time():
        raise Unauthenticated("Expired internal identity")
    return Identity(user_id=str(data["sub"]), role=str(data["role"]))


def require_staff(identity: Identity) -> None:
    if not identity.is_staff:
        raise Forbidden()


def require_admin(identity: Identity) -> None:
    if not identity.is_admin:
        raise Forbidden()
