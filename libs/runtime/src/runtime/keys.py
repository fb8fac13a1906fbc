"""Per-purpose keys derived from `INTERNAL_SIGNING_KEY` with HKDF-SHA256 (RFC 5869).

One secret is configured; each use of it (the identity header, CSRF tokens, ...) gets its own
derived key, so a value signed for one purpose never verifies for another. HKDF is a few lines of
`hmac` and `runtime` does not depend on `cryptography`.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

# Purposes: the `info` of HKDF. Changing one invalidates every value signed for it.
IDENTITY_HEADER = "identity-header"
CSRF = "csrf"

_SALT = b"vpn-service/internal-signing-key/v1"
_HASH_LEN = hashlib.sha256().digest_size


def hkdf_sha256(ikm: bytes, *, salt: bytes, info: bytes, length: int = _HASH_LEN) -> bytes:
    """HKDF extract-then-expand with SHA-256 (RFC 5869, section 2)."""
    if not 0 < length <= 255 * _HASH_LEN:
        raise ValueError("HKDF length out of range")
    prk = hmac.new(salt or bytes(_HASH_LEN), ikm, hashlib.sha256).digest()
    okm, block = b"", b""
    for counter in range(1, -(-length // _HASH_LEN) + 1):
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
    return okm[:length]


@lru_cache(maxsize=32)
def derive_key(master: str, purpose: str) -> bytes:
    """The 32-byte key for `purpose` derived from the master secret (cached: hot paths sign)."""
    if not purpose:
        raise ValueError("a key purpose is required")
    return hkdf_sha256(master.encode(), salt=_SALT, info=purpose.encode())
