"""`/subscriptions/*` and `/admin/subscriptions/*`: routed to the provisioner."""

from fastapi import APIRouter

router = APIRouter(tags=["subscriptions"])
admin = APIRouter(prefix="/admin", tags=["admin"])
