"""The customer-text rules (`contracts.text`), where services and runtime code look for them."""

from contracts.text import INVISIBLE, VisibleText, clean_untrusted, has_visible, strip_invisible

__all__ = ["INVISIBLE", "VisibleText", "clean_untrusted", "has_visible", "strip_invisible"]
