"""Telegram's proofs of who a visitor is, checked with the bot token (no I/O here).

- Login Widget (core.telegram.org/widgets/login): the fields but `hash`, as sorted `k=v` lines,
  signed with HMAC-SHA256 under the key SHA256(bot_token).
- Mini App `initData` (core.telegram.org/bots/webapps, "Validating data received via the Mini
  App"): the URL-decoded pairs but `hash` (a `signature` pair stays in), as sorted `k=v` lines,
  signed with HMAC-SHA256 under the key HMAC_SHA256(key="WebAppData", msg=bot_token).

Both are refused unless the hash matches (compared in constant time) and `auth_date` is at most
`max_age` seconds old (and not ahead of our clock by more than `CLOCK_SKEW`).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import parse_qsl

import orjson

from runtime.errors import Unauthenticated

CLOCK_SKEW = 60
WIDGET_FIELDS = frozenset({"id", "first_name", "last_name", "username", "photo_url",
                           "auth_date", "hash"})


@dataclass(frozen=True)
class TelegramUser:
    id: int
    username: str | None


def _check_string(pairs: dict[str, str]) -> bytes:
    return "\n".join(f"{k}={pairs[k]}" for k in sorted(pairs) if k != "hash").encode()


def _fresh(auth_date: str | None, now: float, max_age: int) -> None:
    try:
        at = int(auth_date or "")
    except ValueError:
        raise Unauthenticated("The Telegram sign-in data is not valid") from None
    if at > now + CLOCK_SKEW or now - at > max_age:
        raise Unauthenticated("The Telegram sign-in data has expired, sign in again",
                              {"reason": "expired"})


def _user(user_id, username) -> TelegramUser:
    if isinstance(user_id, str) and user_id.isdigit():
        user_id = int(user_id)
    if not isinstance(user_id, int) or isinstance(user_id, bool) or not 0 < user_id < 2**63:
        raise Unauthenticated("The Telegram sign-in data is not valid")
    return TelegramUser(user_id, username if isinstance(username, str) and username else None)


def check_widget(fields: dict[str, str], bot_token: str, now: float,
                 max_age: int) -> TelegramUser:
    """The Telegram user the Login Widget's fields are signed for (else 401)."""
    given = fields.get("hash") or ""
    secret = hashlib.sha256(bot_token.encode()).digest()
    expected = hmac.new(secret, _check_string(fields), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), given.lower().encode()):
        raise Unauthenticated("The Telegram sign-in data is not signed by our bot",
                              {"reason": "bad_hash"})
    _fresh(fields.get("auth_date"), now, max_age)
    return _user(fields.get("id"), fields.get("username"))


def check_init_data(init_data: str, bot_token: str, now: float, max_age: int) -> TelegramUser:
    """The Telegram user a Mini App's `initData` is signed for (else 401)."""
    pairs = dict(parse_qsl(init_data, keep_blank_values=True))
    given = pairs.get("hash") or ""
    secret = hmac.new(b"WebAppData", bot_token.encode(), hashlib.sha256).digest()
    expected = hmac.new(secret, _check_string(pairs), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), given.lower().encode()):
        raise Unauthenticated("The Mini App data is not signed by our bot",
                              {"reason": "bad_hash"})
    _fresh(pairs.get("auth_date"), now, max_age)
    try:
        user = orjson.loads(pairs.get("user") or "")
    except orjson.JSONDecodeError:
        user = None
    if not isinstance(user, dict):
        raise Unauthenticated("The Mini App data names no user")
    return _user(user.get("id"), user.get("username"))
