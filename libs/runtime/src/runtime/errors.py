"""The one error type services raise; rendered as `{code, message, details}` by `runtime.http`."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    status = 500
    code = "INTERNAL_ERROR"
    default_message = "Something went wrong"

    def __init__(self, message: str | None = None, details: Any = None, *, code: str | None = None,
                 status: int | None = None, headers: dict[str, str] | None = None):
        self.message = message or self.default_message
        self.details = details
        if code:
            self.code = code
        if status:
            self.status = status
        self.headers = headers or {}
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            out["details"] = self.details
        return out


class ValidationFailed(AppError):
    status, code, default_message = 400, "VALIDATION_ERROR", "Invalid input"


class Unauthenticated(AppError):
    status, code, default_message = 401, "UNAUTHENTICATED", "Authentication required"


class Forbidden(AppError):
    status, code, default_message = 403, "FORBIDDEN", "Not allowed"


class NotFound(AppError):
    status, code, default_message = 404, "NOT_FOUND", "Not found"


class Conflict(AppError):
    status, code, default_message = 409, "CONFLICT", "Conflict"


class PayloadTooLarge(AppError):
    status, code, default_message = 413, "PAYLOAD_TOO_LARGE", "Request body too large"


class RateLimited(AppError):
    status, code, default_message = 429, "RATE_LIMITED", "Too many requests"

    def __init__(self, retry_after: int, message: str | None = None):
        super().__init__(message, headers={"Retry-After": str(max(1, int(retry_after)))})
        self.retry_after = retry_after


class ServiceUnavailable(AppError):
    status, code, default_message = 503, "SERVICE_UNAVAILABLE", "A service is unavailable"


class IllegalTransition(Conflict):
    """A state machine refused a transition."""

    def __init__(self, entity: str, from_state: str, to_state: str):
        super().__init__(
            f"{entity} cannot go from {from_state} to {to_state}",
            {"from": from_state, "to": to_state},
        )
