"""Billing-specific errors: `AppError`s rendered as `{code, message, details}` by the runtime."""

from __future__ import annotations

from runtime.errors import AppError


class IdempotencyKeyRequired(AppError):
    status, code = 400, "IDEMPOTENCY_KEY_REQUIRED"
    default_message = "An Idempotency-Key header of 1 to 255 characters is required"


class IdempotencyKeyReused(AppError):
    status, code = 422, "IDEMPOTENCY_KEY_REUSED"
    default_message = "This Idempotency-Key was used with a different request"


class IdempotencyInProgress(AppError):
    status, code = 409, "IDEMPOTENCY_IN_PROGRESS"
    default_message = "A request with this Idempotency-Key is still being processed"


class InsufficientBalance(AppError):
    status, code = 409, "INSUFFICIENT_BALANCE"
    default_message = "The balance does not cover this"

    def __init__(self, *, balance, needed):
        super().__init__(details={"balance_usd": format(balance, "f"),
                                  "needed_usd": format(needed, "f")})


class PromoCodeInvalid(AppError):
    status, code = 422, "PROMO_CODE_INVALID"

    def __init__(self, reason: str, message: str):
        super().__init__(message, {"reason": reason})


class TrialUnavailable(AppError):
    status, code = 409, "TRIAL_UNAVAILABLE"
    default_message = "A trial is for someone who never had one or any subscription"
