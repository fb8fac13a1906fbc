"""Message catalogues (`i18n/<lang>.json`) and the visitor's language.

The language comes from the `lang` cookie (set by the switch link) or else from
`Accept-Language`; English is the fallback for both the language and any missing message.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from fastapi import Request

LANGUAGES = ("en", "ru")
DEFAULT = "en"
COOKIE = "lang"
CATALOGUE_DIR = Path(__file__).parent / "i18n"


@lru_cache
def catalogue(lang: str) -> dict[str, str]:
    return json.loads((CATALOGUE_DIR / f"{lang}.json").read_text(encoding="utf-8"))


def from_accept_language(header: str | None) -> str | None:
    """The best supported language of an `Accept-Language` header (q-values honoured)."""
    ranked = []
    for i, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and q > 0:
            ranked.append((-q, i, primary))
    return min(ranked)[2] if ranked else None


def request_language(request: Request) -> str:
    chosen = request.cookies.get(COOKIE)
    if chosen in LANGUAGES:
        return chosen
    return from_accept_language(request.headers.get("accept-language")) or DEFAULT


class Translator:
    """`t("key", name=value)`: the message in the chosen language, formatted."""

    def __init__(self, lang: str):
        self.lang = lang
        self.messages = catalogue(lang)
        self.fallback = catalogue(DEFAULT)

    def __call__(self, key: str, **values) -> str:
        text = self.messages.get(key) or self.fallback.get(key) or key
        return text.format(**values) if values else text
