"""The shop bot's calls to billing, the provisioner and the tickets service, made for one
customer.

Each call carries the signed identity of the customer whose Telegram account is linked (role
`USER`, audience the called service), exactly as the gateway's calls do, so the services apply
the same ownership checks, idempotency and rules to the bot as to the web. The one exception is
`admin_extend`: the support desk's `/extend`, signed for the operator's own ADMIN account.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from runtime import identity


class ShopApiError(Exception):
    """A refusal (4xx with the product's `{code, message, details}`) or an outage (status 503:
    the service did not answer usably)."""

    def __init__(self, status: int, code: str, message: str = "", details: Any = None):
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    @property
    def unavailable(self) -> bool:
        return self.status >= 500


class ShopApi:
    def __init__(self, billing_url: str, provisioner_url: str, signing_key: str,
                 timeout: float = 5.0, tickets_url: str = "http://127.0.0.1:8103"):
        self.key = signing_key
        self.billing = httpx.AsyncClient(base_url=billing_url.rstrip("/"), timeout=timeout)
        self.provisioner = httpx.AsyncClient(base_url=provisioner_url.rstrip("/"),
                                             timeout=timeout)
        self.tickets_client = httpx.AsyncClient(base_url=tickets_url.rstrip("/"), timeout=timeout)

    async def _call(self, client: httpx.AsyncClient, audience: str, user_id: str, method: str,
                    path: str, *, json: Any = None, params: dict | None = None,
                    key: str | None = None, role: str = "USER") -> Any:
        headers = {identity.HEADER: identity.sign(self.key, user_id, role, audience=audience)}
        if key is not None:
            headers["Idempotency-Key"] = key
        try:
            r = await client.request(method, "/internal" + path, json=json, params=params,
                                     headers=headers)
        except httpx.HTTPError as exc:
            raise ShopApiError(503, "SERVICE_UNAVAILABLE", type(exc).__name__) from exc
        try:
            body = r.json()
        except ValueError:
            body = None
        if r.status_code >= 400 or not isinstance(body, dict):
            err = body if isinstance(body, dict) else {}
            status = r.status_code if r.status_code >= 400 else 503
            raise ShopApiError(status, str(err.get("code") or "SERVICE_UNAVAILABLE"),
                               str(err.get("message") or ""), err.get("details"))
        return body

    async def bill(self, user_id: str, method: str, path: str, **kw) -> Any:
        return await self._call(self.billing, "billing", user_id, method, path, **kw)

    async def provision(self, user_id: str, method: str, path: str, **kw) -> Any:
        return await self._call(self.provisioner, "provisioner", user_id, method, path, **kw)

    # billing
    async def plans(self, user_id: str) -> list[dict]:
        return (await self.bill(user_id, "GET", "/plans"))["plans"]

    async def options(self, user_id: str) -> list[dict]:
        return (await self.bill(user_id, "GET", "/payment-options"))["options"]

    async def create_invoice(self, user_id: str, key: str, body: dict) -> dict:
        return (await self.bill(user_id, "POST", "/invoices", json=body, key=key))["invoice"]

    async def top_up(self, user_id: str, key: str, body: dict) -> dict:
        return (await self.bill(user_id, "POST", "/balance/top-ups", json=body,
                                key=key))["invoice"]

    async def invoice(self, user_id: str, invoice_id: str) -> dict:
        return (await self.bill(user_id, "GET",
                                f"/invoices/{quote(invoice_id, safe='')}"))["invoice"]

    async def promo(self, user_id: str, code: str, plan_id: str) -> dict:
        return await self.bill(user_id, "GET", f"/promo-codes/{quote(code, safe='')}",
                               params={"plan_id": plan_id})

    async def trial(self, user_id: str) -> dict:
        return (await self.bill(user_id, "POST", "/trial"))["invoice"]

    async def balance(self, user_id: str) -> dict:
        return await self.bill(user_id, "GET", "/balance", params={"limit": 5})

    async def referrals(self, user_id: str) -> dict:
        return await self.bill(user_id, "GET", "/referrals")

    # provisioner
    async def subscriptions(self, user_id: str) -> list[dict]:
        return (await self.provision(user_id, "GET", "/subscriptions"))["subscriptions"]

    async def access(self, user_id: str, subscription_id: str) -> dict:
        return await self.provision(user_id, "GET",
                                    f"/subscriptions/{quote(subscription_id, safe='')}/access")

    async def invoices(self, user_id: str, limit: int = 3) -> list[dict]:
        return (await self.bill(user_id, "GET", "/invoices", params={"limit": limit}))["invoices"]

    async def usage(self, user_id: str, subscription_id: str) -> dict:
        return await self.provision(user_id, "GET",
                                    f"/subscriptions/{quote(subscription_id, safe='')}/usage")

    async def admin_extend(self, admin_id: str, subscription_id: str, days: int) -> dict:
        """The provisioner's admin extension, by the ADMIN `admin_id` (its actor)."""
        path = f"/admin/subscriptions/{quote(subscription_id, safe='')}/extend"
        return (await self._call(self.provisioner, "provisioner", admin_id, "POST", path,
                                 json={"days": days}, role="ADMIN"))["subscription"]

    # tickets
    async def tickets(self, user_id: str) -> list[dict]:
        return (await self._call(self.tickets_client, "tickets", user_id, "GET", "/tickets",
                                 params={"limit": 100}))["tickets"]

    async def rate(self, user_id: str, ticket_id: str, score: int) -> dict:
        return (await self._call(self.tickets_client, "tickets", user_id, "POST",
                                 f"/tickets/{quote(ticket_id, safe='')}/rating",
                                 json={"score": score}))["ticket"]

    async def close(self) -> None:
        await self.billing.aclose()
        await self.provisioner.aclose()
        await self.tickets_client.aclose()
