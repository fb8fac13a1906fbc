"""What every upstream client shares: the signed call, error mapping and typed answers.

A client is the only code that calls a service. It sends the caller's signed identity, turns a
refusal (4xx) into the service's own `AppError` (status, code, message, details, Retry-After),
a failure (5xx, timeout, connection refused) into `ServiceUnavailable`, and a success into a
`Reply` typed by the public schema the service answers with (`contracts.public`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from fastapi import Response
from pydantic import BaseModel

from gateway.upstream import Upstream, UpstreamResponse
from runtime.errors import AppError, ServiceUnavailable

T = TypeVar("T", bound=BaseModel)

# Headers of a service's answer the public API passes on.
PASSED_HEADERS = frozenset({"retry-after", "idempotent-replayed"})


class Who(Protocol):
    """Whoever a call is made for: a signed-in caller, a webhook's provider, or nobody."""

    @property
    def id(self) -> str: ...

    @property
    def role(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Anonymous:
    """A call made for nobody in particular (public catalogue, readiness, a provider webhook)."""

    id: str = "anonymous"
    role: str = "SERVICE"


ANONYMOUS = Anonymous()


class Reply(Generic[T]):
    """A service's 2xx answer: its status and raw body, parsed into `T` only when read.

    The JSON API hands the raw body on unchanged (`response()`), the web pages read `data`.
    """

    __slots__ = ("_data", "_model", "raw")

    def __init__(self, model: type[T], raw: UpstreamResponse):
        self._model = model
        self._data: T | None = None
        self.raw = raw

    @property
    def status_code(self) -> int:
        return self.raw.status_code

    @property
    def data(self) -> T:
        if self._data is None:
            self._data = self._model.model_validate_json(self.raw.content)
        return self._data

    def json(self) -> dict[str, Any]:
        """The answer as checked against its model, in its JSON form (what the pages render)."""
        return self.data.model_dump(mode="json")

    def response(self) -> Response:
        extra = {k: v for k, v in self.raw.headers.items() if k.lower() in PASSED_HEADERS}
        return Response(content=self.raw.content, status_code=self.raw.status_code,
                        media_type="application/json", headers=extra)


def refusal(r: UpstreamResponse) -> AppError:
    """The service's own error for a 4xx answer."""
    try:
        body = r.json() if r.content else {}
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return AppError(body.get("message"), body.get("details"), code=body.get("code"),
                    status=r.status_code,
                    headers={k: v for k, v in r.headers.items() if k.lower() in PASSED_HEADERS})


class ServiceClient:
    """The base of one typed client per upstream service."""

    def __init__(self, upstream: Upstream):
        self.upstream = upstream
        self.name = upstream.name

    async def send(self, method: str, path: str, who: Who, *, json: Any = None,
                   params: dict | None = None, content: bytes | None = None,
                   headers: dict[str, str] | None = None) -> UpstreamResponse:
        """The raw answer of a call; a 5xx or an unreachable service is `ServiceUnavailable`."""
        r = await self.upstream.call(method, path, user_id=who.id, role=who.role, json=json,
                                     params=params, content=content, headers=headers)
        if r.status_code >= 500:
            raise ServiceUnavailable(f"The {self.name} service failed")
        return r

    async def call(self, model: type[T], method: str, path: str, who: Who, **kwargs) -> Reply[T]:
        """A call whose 2xx answer is `model`; a 4xx is raised as the service's `AppError`."""
        r = await self.send(method, path, who, **kwargs)
        if r.status_code >= 400:
            raise refusal(r)
        return Reply(model, r)

    async def ready(self) -> tuple[int, dict[str, Any]]:
        """The service's `/readyz`: its status code and JSON body (empty when it sent none)."""
        r = await self.upstream.call("GET", "/readyz", user_id=ANONYMOUS.id, role=ANONYMOUS.role)
        try:
            body = r.json() if r.headers.get("content-type", "").startswith(
                "application/json") else {}
        except ValueError:
            body = {}
        return r.status_code, body if isinstance(body, dict) else {}

    async def call_json(self, method: str, path: str, who: Who, **kwargs) -> dict[str, Any]:
        """A call whose answer has no public model: its JSON object (the ops views)."""
        r = await self.send(method, path, who, **kwargs)
        if r.status_code >= 400:
            raise refusal(r)
        try:
            body = r.json() if r.content else {}
        except ValueError as exc:
            raise ServiceUnavailable(f"The {self.name} service answered badly") from exc
        return body
