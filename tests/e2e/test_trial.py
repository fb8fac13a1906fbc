"""The free trial through the whole system: granted once and provisioned like a paid invoice
(with access), refused the second time. (Once per Telegram account is proven in billing's
tests, on the projection of `telegram.account.linked.v1`.)"""

from __future__ import annotations

from datetime import datetime

from tests.conftest import register, sql


def test_a_trial_is_granted_and_provisioned_once(stack, gateway_url):
    customer = register(gateway_url)
    r = customer.post("/trial")
    assert r.status_code == 201, r.text
    sub = r.json()["subscription"]
    assert (sub["plan_id"], sub["status"], sub["max_devices"]) == ("trial", "ACTIVE", 1)
    lasts = datetime.fromisoformat(sub["expires_at"]) - datetime.fromisoformat(sub["started_at"])
    assert lasts.days == 3
    assert customer.get(f"/subscriptions/{sub['id']}/access").status_code == 200
    again = customer.post("/trial")
    assert again.status_code == 409 and again.json()["code"] == "TRIAL_UNAVAILABLE"
    user_id = customer.get("/auth/me").json()["user"]["id"]
    rows = sql("SELECT i.kind, i.status, i.amount_usd FROM billing.trials t JOIN "
               "billing.invoices i ON i.id = t.invoice_id WHERE t.user_id = $1", user_id)
    assert [(r["kind"], r["status"], str(r["amount_usd"])) for r in rows] == [
        ("TRIAL", "PAID", "0.00")]
    grants = sql("SELECT count(*) AS n FROM provisioning.grants g JOIN billing.trials t ON "
                 "t.invoice_id = g.invoice_id WHERE t.user_id = $1", user_id)
    assert grants[0]["n"] == 1
