"""Outline server (shadowbox) management API driver, with the server certificate pinned.

Outline servers use a self-signed certificate; the management config gives `apiUrl` (which
embeds a secret path) and `certSha256`. Normal CA verification cannot work, so the TLS
handshake is accepted without it and the peer certificate's SHA-256 is compared with the pin
right after the handshake, before a single byte of the request (and so the secret path) is
sent. A mismatch closes the connection and fails the call.

Accounts are access keys created with caller-chosen ids (`PUT /access-keys/{ref}`), so a retry
never makes a second key; 409 means an earlier try already created it. Outline has no "disabled"
state, so disabling deletes the key; re-enabling re-creates it with the same id and a password
derived from `VPN_KEY_SECRET`, so the customer's access URL survives a suspend/resume.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ssl
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpcore
import httpx

from provisioner.backends.base import (
    REF_PREFIX,
    AccessDetails,
    AccountMissing,
    BackendError,
    Usage,
    VpnBackend,
    operation,
)


class CertificatePinMismatch(BackendError):
    """The server's certificate is not the pinned one: possibly not our server."""


def parse_fingerprint(value: str) -> bytes:
    """`certSha256` as Outline prints it (hex, any case, colons allowed) → 32 raw bytes."""
    cleaned = value.replace(":", "").replace(" ", "").strip()
    try:
        raw = bytes.fromhex(cleaned)
    except ValueError as exc:
        raise ValueError("certSha256 must be a hex SHA-256 fingerprint") from exc
    if len(raw) != 32:
        raise ValueError("certSha256 must be 32 bytes (64 hex digits)")
    return raw


def certificate_matches(der: bytes | None, fingerprint: bytes) -> bool:
    return der is not None and hmac.compare_digest(hashlib.sha256(der).digest(), fingerprint)


class _PinnedStream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream, fingerprint: bytes):
        self._inner = inner
        self._fingerprint = fingerprint

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        tls = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        ssl_object = tls.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not certificate_matches(der, self._fingerprint):
            await tls.aclose()
            raise CertificatePinMismatch("outline", "tls", "server certificate does not match "
                                         "the pinned certSha256")
        return tls


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, fingerprint: bytes):
        self._inner = httpcore.AnyIOBackend()
        self._fingerprint = fingerprint

    async def connect_tcp(self, host, port, timeout=None, local_address=None,
                          socket_options=None) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout=timeout,
                                               local_address=local_address,
                                               socket_options=socket_options)
        return _PinnedStream(stream, self._fingerprint)

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise BackendError("outline", "connect", "unix sockets are not supported")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def pinned_transport(fingerprint: bytes) -> httpx.AsyncHTTPTransport:
    """An httpx transport that only talks to a server presenting the pinned certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # replaced by the fingerprint check in start_tls
    transport = httpx.AsyncHTTPTransport(verify=context)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=context, max_connections=20, max_keepalive_connections=10,
        keepalive_expiry=30, network_backend=_PinnedBackend(fingerprint),
    )
    return transport


class OutlineBackend(VpnBackend):
    name = "outline"
    # A key's data limit is enforced by the server (over it, the relay drops the key); Outline
    # has no device limit.
    enforces_devices = False
    enforces_traffic = True
    # Its limit counts the last 30 days: a grant cannot reset it, the window rolls on.
    grant_resets_traffic = False

    def __init__(self, api_url: str, cert_sha256: str, *, key_secret: str,
                 data_limit_bytes: int = 0, timeout: float = 10.0):
        if urlsplit(api_url).scheme != "https":
            raise ValueError("OUTLINE_API_URL must be an https:// URL")
        self._base = api_url.rstrip("/")
        self._key_secret = key_secret.encode()
        self.data_limit_bytes = data_limit_bytes
        self._client = httpx.AsyncClient(transport=pinned_transport(parse_fingerprint(cert_sha256)),
                                         timeout=httpx.Timeout(timeout, connect=min(timeout, 5)))

    def _url(self, path: str) -> str:
        return self._base + path

    def _key_path(self, ref: str) -> str:
        return f"/access-keys/{quote(ref, safe='')}"

    def password_for(self, ref: str) -> str:
        digest = hmac.new(self._key_secret, f"outline-key:{ref}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode()

    async def _call(self, op: str, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            return await self._client.request(method, self._url(path), **kwargs)
        except httpx.HTTPError as exc:  # the message may name the secret URL: keep only the type
            raise BackendError(self.name, op, f"transport error: {type(exc).__name__}") from None

    def _fail(self, op: str, resp: httpx.Response) -> BackendError:
        return BackendError(self.name, op, f"HTTP {resp.status_code}", status=resp.status_code)

    @operation("ensure_active")
    async def ensure_active(self, ref: str, *, expires_at: datetime, max_devices: int,
                            data_limit_bytes: int | None = None,
                            traffic_reset: str = "NONE") -> None:
        # Outline keys have no expiry: the expiry sweep deletes the key when time runs out.
        wanted = data_limit_bytes if data_limit_bytes is not None else self.data_limit_bytes
        body: dict[str, Any] = {"name": ref, "password": self.password_for(ref)}
        if wanted:
            body["limit"] = {"bytes": wanted}
        resp = await self._call("ensure_active", "PUT", self._key_path(ref), json=body)
        if resp.status_code == 201:
            return
        if resp.status_code != 409:
            raise self._fail("ensure_active", resp)
        # 409: an earlier try created it (or the id is taken): make sure it is ours and current.
        current = await self._call("ensure_active", "GET", self._key_path(ref))
        if current.status_code != 200:
            raise self._fail("ensure_active", current)
        limit = (current.json().get("dataLimit") or {}).get("bytes")
        if wanted and limit != wanted:
            r = await self._call("ensure_active", "PUT", self._key_path(ref) + "/data-limit",
                                 json={"limit": {"bytes": wanted}})
            if r.status_code != 204:
                raise self._fail("ensure_active", r)
        elif not wanted and limit is not None:
            r = await self._call("ensure_active", "DELETE", self._key_path(ref) + "/data-limit")
            if r.status_code != 204:
                raise self._fail("ensure_active", r)

    @operation("disable")
    async def disable(self, ref: str) -> None:
        resp = await self._call("disable", "DELETE", self._key_path(ref))
        if resp.status_code not in (204, 404):
            raise self._fail("disable", resp)

    @operation("access")
    async def access(self, ref: str) -> AccessDetails:
        resp = await self._call("access", "GET", self._key_path(ref))
        if resp.status_code == 404:
            raise AccountMissing(self.name, "access", "no such access key", status=404)
        if resp.status_code != 200:
            raise self._fail("access", resp)
        key = resp.json()
        return AccessDetails(key["accessUrl"], {
            "method": key.get("method"), "port": key.get("port"), "name": key.get("name"),
            "data_limit_bytes": (key.get("dataLimit") or {}).get("bytes"),
        })

    @operation("usage")
    async def usage(self, ref: str) -> Usage:
        """Bytes over the last 30 days (`GET /metrics/transfer`, the window the server's limit
        applies to, so there is no reset date) against the key's own limit or else the
        server-wide default; the server drops a key once it is over (not at) its limit."""
        key = await self._call("usage", "GET", self._key_path(ref))
        if key.status_code == 404 and key.json().get("code") != "ResourceNotFound":
            raise AccountMissing(self.name, "usage", "no such access key", status=404)
        if key.status_code != 200:
            raise self._fail("usage", key)
        limit = (key.json().get("dataLimit") or {}).get("bytes")
        if limit is None:
            server = await self._call("usage", "GET", "/server")
            if server.status_code != 200:
                raise self._fail("usage", server)
            limit = (server.json().get("accessKeyDataLimit") or {}).get("bytes")
        transfer = await self._call("usage", "GET", "/metrics/transfer")
        if transfer.status_code != 200:
            raise self._fail("usage", transfer)
        used = int((transfer.json().get("bytesTransferredByUserId") or {}).get(ref) or 0)
        return Usage(used_bytes=used, limit_bytes=limit, resets_at=None, devices_limit=None,
                     devices_used=None, limited=limit is not None and used > limit)

    @operation("accounts")
    async def accounts(self) -> dict[str, bool]:
        resp = await self._call("accounts", "GET", "/access-keys")
        if resp.status_code != 200:
            raise self._fail("accounts", resp)
        # A key that exists can connect; a disabled account is a deleted key.
        return {str(k["id"]): True for k in resp.json().get("accessKeys", [])
                if str(k.get("id", "")).startswith(REF_PREFIX)}

    async def close(self) -> None:
        await self._client.aclose()
