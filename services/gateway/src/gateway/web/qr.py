"""QR codes rendered on the server as inline SVG (no script, allowed by the page's CSP)."""

from __future__ import annotations

import segno
from markupsafe import Markup


def qr_svg(data: str, title: str) -> Markup:
    code = segno.make(data, error="m")
    return Markup(code.svg_inline(scale=4, border=2, dark="#111111", light="#ffffff",
                                  omitsize=True, title=title, svgclass="qr"))
