"""Billing's queries whose shape matters at scale: the payment watch's invoices."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from billing.models import Invoice, Payment
from billing.repository import InvoiceRepository

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def invoice(provider: str, status: str, locked: datetime, **times) -> Invoice:
    return Invoice(
        id=uuid.uuid4().hex, user_id=f"watch-{uuid.uuid4().hex[:6]}", kind="TOP_UP",
        status=status, amount_usd=Decimal(5), asset="USDT", network="TRON", rate_usd=Decimal(1),
        amount_asset=Decimal(5), provider=provider, rate_locked_until=locked,
        created_at=locked - timedelta(minutes=30), updated_at=locked, **times)


async def test_the_payment_watch_pages_open_confirming_and_recently_closed_invoices(db):
    mine, other = f"watch-{uuid.uuid4().hex[:8]}", f"other-{uuid.uuid4().hex[:8]}"
    late_since = NOW - timedelta(hours=72)
    at = [NOW - timedelta(hours=h) for h in range(10)]
    rows = {
        "open": invoice(mine, "PENDING", at[2]),
        "created": invoice(mine, "CREATED", at[1]),
        "confirming": invoice(mine, "PAID", at[5], paid_at=at[5]),
        "settled": invoice(mine, "PAID", at[6], paid_at=at[6]),
        "expired lately": invoice(mine, "EXPIRED", at[4], expired_at=at[4]),
        "expired long ago": invoice(mine, "EXPIRED", at[9], expired_at=NOW - timedelta(days=9)),
        "canceled lately": invoice(mine, "CANCELED", at[3], canceled_at=at[3]),
        "canceled long ago": invoice(mine, "CANCELED", at[8], canceled_at=NOW - timedelta(days=4)),
        "another provider's": invoice(other, "PENDING", at[0]),
    }
    payments = [Payment(id=uuid.uuid4().hex, invoice_id=rows[k].id, status=status,
                        txid=uuid.uuid4().hex, asset="USDT", network="TRON",
                        amount_asset=Decimal(5), created_at=NOW, updated_at=NOW)
                for k, status in (("confirming", "CONFIRMED"), ("confirming", "DETECTED"),
                                  ("settled", "SETTLED"))]
    async with db.transaction() as s:
        s.add_all(rows.values())
        await s.flush()
        s.add_all(payments)
    async with db.transaction() as s:
        repo = InvoiceRepository(s)
        watched = await repo.ids_to_watch(mine, None, 100)
        first_two = await repo.ids_to_watch(mine, None, 2)
        rest = await repo.ids_to_watch(mine, first_two[-1], 100)
        expired = await repo.ids_closed_lately(mine, "EXPIRED", late_since, None, 100)
        canceled = await repo.ids_closed_lately(mine, "CANCELED", late_since, None, 100)
        after_expired = await repo.ids_closed_lately(mine, "EXPIRED", late_since, expired[-1],
                                                     100)
    names = {v.id: k for k, v in rows.items()}
    # each once (two unsettled payments are one invoice), oldest rate lock first, in pages
    assert [names[i] for _, i in watched] == ["confirming", "open", "created"]
    assert [names[i] for _, i in first_two] == ["confirming", "open"]
    assert [names[i] for _, i in rest] == ["created"]
    # the recently closed ones by when they closed, each status on its own
    assert [names[i] for _, i in expired] == ["expired lately"]
    assert [names[i] for _, i in canceled] == ["canceled lately"]
    assert after_expired == []
