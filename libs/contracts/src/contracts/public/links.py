"""The stable subscription link's public form: its URL, and the VPN client apps' import links
for it (adapters docs, "VPN client deep links"). The provisioner answers them in `access`; the
gateway's import page (`/import/{app}/{token}`) opens them from places that take only http(s)
links (Telegram's buttons)."""

from __future__ import annotations

import re
from urllib.parse import quote

TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")

# The apps' import links (adapters docs, "VPN client deep links"): `{url}` as is (ours is
# made of URL-safe characters only), `{q}` percent-encoded for a query parameter, `{name}` the
# profile's name.
APPS: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("happ", "Happ", ("ios", "android", "macos", "windows", "tvos", "androidtv"),
     "happ://add/{url}"),
    ("streisand", "Streisand", ("ios",), "streisand://import/{url}"),
    ("v2rayng", "v2rayNG", ("android",), "v2rayng://install-config?url={q}#{name}"),
    ("hiddify", "Hiddify", ("android", "ios", "windows", "macos", "linux", "androidtv"),
     "hiddify://import/{url}"),
    ("shadowrocket", "Shadowrocket", ("ios", "tvos"), "shadowrocket://add/{url}#{name}"),
    ("clash-meta", "Clash Meta (Mihomo)", ("android",),
     "clashmeta://install-config?name={name}&url={q}"),
    ("clash-verge", "Clash Verge (Mihomo)", ("windows", "macos", "linux"),
     "clash://install-config?url={q}"),
)
APP_IDS = frozenset(a[0] for a in APPS)


def link_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/api/v1/sub/{token}"


def import_url(app_id: str, url: str, name: str) -> str:
    template = next(a[3] for a in APPS if a[0] == app_id)
    return template.format(url=url, q=quote(url, safe=""), name=quote(name, safe=""))


def link_view(base_url: str, token: str | None, name: str) -> dict:
    """The public `subscription_url` and `apps` of a token (None: revoked, nothing)."""
    if not token:
        return {"subscription_url": None, "apps": []}
    url = link_url(base_url, token)
    base = base_url.rstrip("/")
    return {"subscription_url": url, "apps": [
        {"id": app_id, "name": title, "platforms": list(platforms),
         "import_url": import_url(app_id, url, name),
         "open_url": f"{base}/import/{app_id}/{token}"}
        for app_id, title, platforms, _ in APPS]}
