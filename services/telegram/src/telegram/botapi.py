"""Telegram Bot API client over httpx (the base URL is a setting: emulator or local server)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from runtime.logging import get_logger

log = get_logger(__name__)


class TelegramError(Exception):
    def __init__(self, status: int, description: str, retry_after: int | None = None):
        super().__init__(f"{status}: {description}")
        self.status = status
        self.description = description
        self.retry_after = retry_after

    @property
    def is_retry_after(self) -> bool:
        return self.status == 429

    @property
    def is_permanent(self) -> bool:
        return 400 <= self.status < 500 and self.status != 429


class BotApi:
    def __init__(self, base: str, token: str, timeout: float = 10.0):
        self._url = f"{base.rstrip('/')}/bot{token}/"
        self._client = httpx.AsyncClient(timeout=timeout)

    async def call(self, method: str, **params: Any) -> Any:
        payload = {k: v for k, v in params.items() if v is not None}
        try:
            resp = await self._client.post(self._url + method, json=payload)
        except httpx.HTTPError as exc:
            raise TelegramError(599, f"transport error: {type(exc).__name__}") from exc
        return self._result(resp)

    async def upload(self, method: str, files: dict[str, tuple[str, bytes, str]],
                     **params: Any) -> Any:
        """A call with files (multipart/form-data); objects go as JSON text, as Telegram
        reads them."""
        data = {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()
                if v is not None}
        try:
            resp = await self._client.post(self._url + method, data=data, files=files)
        except httpx.HTTPError as exc:
            raise TelegramError(599, f"transport error: {type(exc).__name__}") from exc
        return self._result(resp)

    def _result(self, resp: httpx.Response) -> Any:
        """The call's `result`, or its error as a TelegramError (with `retry_after` on 429)."""
        try:
            data = resp.json()
        except ValueError:
            raise TelegramError(resp.status_code, resp.text[:200]) from None
        if data.get("ok"):
            return data.get("result")
        retry_after = (data.get("parameters") or {}).get("retry_after")
        raise TelegramError(int(data.get("error_code") or resp.status_code),
                            str(data.get("description", "")), retry_after)

    async def send_message(self, chat_id: int, text: str, *, thread_id: int | None = None,
                           reply_to: int | None = None, parse_mode: str | None = None) -> dict:
        """Plain text is cut to Telegram's 4096; HTML text must be built to fit (a cut could
        break a tag)."""
        reply = {"message_id": reply_to, "allow_sending_without_reply": True} if reply_to else None
        return await self.call("sendMessage", chat_id=chat_id,
                               text=text if parse_mode else text[:4096], parse_mode=parse_mode,
                               message_thread_id=thread_id, reply_parameters=reply,
                               link_preview_options={"is_disabled": True})

    async def close(self) -> None:
        await self._client.aclose()
