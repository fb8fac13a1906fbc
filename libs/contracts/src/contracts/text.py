"""Customer text as operators will read it: invisible formatting characters removed.

Bidi controls (U+202A-U+202E, U+2066-U+2069) can make a line read differently from what was
typed, and zero-width characters (U+200B-U+200D, U+2060, U+FEFF) can hide text or make two
different strings look the same; both are removed. What remains must show something: at least
one character that is not whitespace, a control or a format character.

`VisibleText(min, max)` is the request-model field type of the public schemas (`contracts.public`),
so the gateway and the tickets service refuse the same input with a 400; `clean_untrusted` is for
text that arrives by events, where refusing is no longer possible (NUL and lone surrogates are
dropped as well).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

INVISIBLE = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200b\u200c\u200d\u2060\ufeff"
_INVISIBLE_RE = re.compile(f"[{INVISIBLE}]")
_UNSTORABLE_RE = re.compile("[\x00\ud800-\udfff]")  # Postgres refuses NUL; surrogates aren't text
_HIDDEN_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"}


def strip_invisible(text: str) -> str:
    """`text` without bidi controls and zero-width characters."""
    return _INVISIBLE_RE.sub("", text)


def has_visible(text: str) -> bool:
    """True when some character of `text` shows on screen."""
    return any(not ch.isspace() and unicodedata.category(ch) not in _HIDDEN_CATEGORIES
               for ch in text)


def clean_untrusted(text: str) -> str:
    """Text from an event or a chat: invisible and unstorable characters removed, trimmed."""
    return strip_invisible(_UNSTORABLE_RE.sub("", text)).strip()


def _visible(value: str, min_length: int) -> str:
    if _UNSTORABLE_RE.search(value):
        raise PydanticCustomError("string_unstorable",
                                  "Text must not contain NUL characters or lone surrogates")
    cleaned = strip_invisible(value)
    if not has_visible(cleaned):
        raise PydanticCustomError("string_not_visible",
                                  "Text must contain at least one visible character")
    if len(cleaned) < min_length:
        raise PydanticCustomError("string_too_short",
                                  "String should have at least {min_length} characters",
                                  {"min_length": min_length})
    return cleaned


def VisibleText(min_length: int, max_length: int):  # noqa: N802 - used like a type
    """A string field: `min_length`..`max_length` long, then invisible characters removed, at
    least one visible character and still `min_length` long."""
    return Annotated[str, Field(min_length=min_length, max_length=max_length),
                     AfterValidator(lambda v: _visible(v, min_length))]
