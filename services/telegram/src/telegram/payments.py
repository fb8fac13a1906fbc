"""Telegram Stars payments in the bot: the pre-checkout answer and the payments received.

Telegram asks before it takes the Stars (`pre_checkout_query`) and waits 10 s for
`answerPreCheckoutQuery`. The webhook answers it right after storing the update, from billing's
word (`GET /internal/invoices/{id}/payable`, the payload being billing's invoice id): yes only
while the invoice is payable, else no with a short reason; billing not answering in time is a
no ("try again"), so Telegram never takes Stars billing did not agree to.

`successful_payment` is recorded once per `telegram_payment_charge_id` (`stars_payments`) and,
the first time only, published as `telegram.stars_payment.received.v1` through the outbox:
billing stores and settles it. `refunded_payment` (after a refund) is recorded on the same row.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.telegram import StarsPaymentReceivedV1
from runtime import identity
from runtime.logging import get_logger
from telegram.botapi import BotApi, TelegramError
from telegram.metrics import PRE_CHECKOUT_ANSWERS
from telegram.models import StarsPayment
from telegram.texts import t

log = get_logger(__name__)

STARS = "XTR"
# Telegram's wait for the answer, less what the answer's own trip may take.
PRE_CHECKOUT_SECONDS = 10.0
ANSWER_MARGIN_SECONDS = 2.0
INVOICE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

TRY_AGAIN = "Payments are unavailable for a moment. Please try again in a minute."
REFUSALS = {
    "already_paid": "This invoice is already paid.",
    "closed": "This invoice is no longer valid. Open a new one in the panel.",
    "expired": "This invoice has expired. Open a new one in the panel.",
    "wrong_amount": "The price has changed. Open the invoice again from the panel.",
    "wrong_currency": "This invoice is paid in Telegram Stars only.",
    "other_provider": "This invoice is not paid with Telegram Stars.",
    "unknown_invoice": "This invoice is unknown. Open it again from the panel.",
}
PAID_TEXT = t("en", "stars_paid")  # the service answers in the customer's language


class BillingUnavailable(Exception):
    """Billing did not give a usable answer."""


class BillingClient:
    """The telegram service's calls to billing's internal API, signed as the service."""

    def __init__(self, base_url: str, signing_key: str, timeout: float):
        self.key = signing_key
        self.client = httpx.AsyncClient(base_url=base_url.rstrip("/"),
                                        timeout=httpx.Timeout(timeout, connect=min(2.0, timeout)))

    def _headers(self) -> dict[str, str]:
        return {identity.HEADER: identity.sign(self.key, "telegram", "SERVICE",
                                               audience="billing")}

    async def payable_refusal(self, invoice_id: str, *, asset: str, amount: int) -> str | None:
        """Why billing would not take this payment for the invoice (None: it would)."""
        try:
            r = await self.client.get(f"/internal/invoices/{quote(invoice_id, safe='')}/payable",
                                      params={"provider": "stars", "asset": asset,
                                              "amount": amount}, headers=self._headers())
        except httpx.HTTPError as exc:
            raise BillingUnavailable(type(exc).__name__) from exc
        if r.status_code != 200:
            raise BillingUnavailable(f"HTTP {r.status_code}")
        try:
            body = r.json()
            return None if body["payable"] is True else str(body.get("reason") or "unknown")
        except (ValueError, KeyError, TypeError) as exc:
            raise BillingUnavailable("unexpected answer") from exc

    async def close(self) -> None:
        await self.client.aclose()


class PreCheckout:
    """Answers Telegram's pre-checkout queries within its deadline."""

    def __init__(self, bot: BotApi, billing: BillingClient, billing_timeout: float):
        self.bot = bot
        self.billing = billing
        self.billing_timeout = billing_timeout

    async def verdict(self, query: dict[str, Any], received_at: float) -> str | None:
        """Why the payment must be refused (a message for the customer), None to accept it."""
        payload, amount = query.get("invoice_payload"), query.get("total_amount")
        if query.get("currency") != STARS:
            return REFUSALS["wrong_currency"]
        if not isinstance(payload, str) or not INVOICE_ID.match(payload) or not isinstance(
                amount, int) or isinstance(amount, bool):
            return REFUSALS["unknown_invoice"]
        left = received_at + PRE_CHECKOUT_SECONDS - ANSWER_MARGIN_SECONDS - time.monotonic()
        try:
            reason = await asyncio.wait_for(
                self.billing.payable_refusal(payload, asset=STARS, amount=amount),
                max(0.1, min(self.billing_timeout, left)))
        except (BillingUnavailable, TimeoutError) as exc:
            log.warning("pre_checkout_billing_unavailable", invoice_id=payload,
                        error=type(exc).__name__ if isinstance(exc, TimeoutError) else str(exc))
            PRE_CHECKOUT_ANSWERS.labels("billing_unavailable").inc()
            return TRY_AGAIN
        if reason is not None:
            PRE_CHECKOUT_ANSWERS.labels(reason if reason in REFUSALS else "refused").inc()
        return None if reason is None else REFUSALS.get(reason, REFUSALS["unknown_invoice"])

    async def answer(self, query: dict[str, Any], received_at: float) -> bool:
        """Ask billing and answer Telegram; True when the payment was accepted."""
        refusal = await self.verdict(query, received_at)
        if refusal is None:
            PRE_CHECKOUT_ANSWERS.labels("ok").inc()
        try:
            await self.bot.call("answerPreCheckoutQuery", pre_checkout_query_id=query.get("id"),
                                ok=refusal is None, error_message=refusal)
        except TelegramError as exc:  # too late, or answered already: Telegram decides alone
            log.warning("pre_checkout_answer_failed", error=exc.description[:200],
                        invoice_id=str(query.get("invoice_payload"))[:64])
            return False
        log.info("pre_checkout_answered", ok=refusal is None,
                 invoice_id=str(query.get("invoice_payload"))[:64],
                 seconds=round(time.monotonic() - received_at, 3))
        return refusal is None


def _moment(value: Any) -> datetime:
    return datetime.fromtimestamp(value, UTC) if isinstance(value, int) else datetime.now(UTC)


async def record_payment(s: AsyncSession, update_id: int, message: dict[str, Any], events
                         ) -> bool:
    """Record a successful_payment once per charge and, the first time, publish it; True when
    it was new. A payment without a charge id or payload is not one (False)."""
    sp = message["successful_payment"]
    charge, payload = sp.get("telegram_payment_charge_id"), sp.get("invoice_payload")
    sender, amount = message.get("from") or {}, sp.get("total_amount")
    if not (isinstance(charge, str) and charge and isinstance(payload, str) and payload
            and isinstance(amount, int) and isinstance(sender.get("id"), int)):
        log.error("stars_payment_unreadable", update_id=update_id)
        return False
    paid_at = _moment(message.get("date"))
    stored = await s.execute(insert(StarsPayment).values(
        telegram_payment_charge_id=charge, invoice_payload=payload, total_amount=amount,
        currency=str(sp.get("currency") or ""), telegram_user_id=sender["id"],
        chat_id=(message.get("chat") or {}).get("id") or sender["id"], update_id=update_id,
        paid_at=paid_at).on_conflict_do_nothing().returning(
        StarsPayment.telegram_payment_charge_id))
    if stored.first() is None:
        return False
    await events.add(s, StarsPaymentReceivedV1(
        invoice_id=payload, telegram_payment_charge_id=charge, total_amount=amount,
        currency=str(sp.get("currency") or ""), telegram_user_id=sender["id"], paid_at=paid_at))
    log.info("stars_payment_received", invoice_id=payload[:64], amount=amount)
    return True


async def record_refund(s: AsyncSession, update_id: int, message: dict[str, Any]) -> bool:
    """Record a refunded_payment on its charge (a charge not seen before gets its row)."""
    rp = message["refunded_payment"]
    charge, sender = rp.get("telegram_payment_charge_id"), message.get("from") or {}
    if not isinstance(charge, str) or not charge:
        return False
    at = _moment(message.get("date"))
    amount = rp.get("total_amount")
    stmt = insert(StarsPayment).values(
        telegram_payment_charge_id=charge, invoice_payload=str(rp.get("invoice_payload") or ""),
        total_amount=amount if isinstance(amount, int) else 0,
        currency=str(rp.get("currency") or ""),
        telegram_user_id=sender.get("id") if isinstance(sender.get("id"), int) else 0,
        chat_id=(message.get("chat") or {}).get("id") or 0, update_id=update_id, paid_at=at,
        refunded_at=at)
    await s.execute(stmt.on_conflict_do_update(
        index_elements=[StarsPayment.telegram_payment_charge_id],
        set_={"refunded_at": at}, where=StarsPayment.refunded_at.is_(None)))
    log.info("stars_payment_refunded", invoice_id=str(rp.get("invoice_payload"))[:64])
    return True
