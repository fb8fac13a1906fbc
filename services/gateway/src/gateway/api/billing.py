"""`/plans`, `/payment-options`, `/invoices/*`, `/sandbox/*`, `/payments/webhooks/*`, admin billing."""

from fastapi import APIRouter

router = APIRouter(tags=["billing"])
admin = APIRouter(prefix="/admin", tags=["admin"])
