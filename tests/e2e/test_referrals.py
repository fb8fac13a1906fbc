"""Referrals through the whole system: a customer's code and link, a friend who signs up with it
(an unknown code is ignored, never an error), pays on the sandbox chain, and so rewards the
referrer's balance once (10 % by default); a refund of that invoice takes the reward back."""

from __future__ import annotations

import uuid

import httpx

from tests.conftest import payment_option, register, sql, test_env, unique_email, wait_for


def sign_up(gateway_url: str, ref: str | None) -> httpx.Client:
    """A signed-in client for a new customer who registered with `ref`."""
    client = httpx.Client(base_url=gateway_url + "/api/v1", timeout=15)
    r = client.post("/auth/register", json={"email": unique_email("friend"),
                                            "password": "correct horse 1", "ref": ref})
    assert r.status_code == 201, r.text
    return client


def user_id_of(client: httpx.Client) -> str:
    return client.get("/auth/me").json()["user"]["id"]


def referral_recorded(referred_id: str) -> bool:
    return bool(sql("SELECT 1 FROM billing.referrals WHERE referred_user_id = $1", referred_id))


def plan_priced(admin_client, price: str) -> dict:
    r = admin_client.post("/admin/plans", json={
        "name": f"Referral plan {uuid.uuid4().hex[:6]}", "price_usd": price,
        "duration_days": 30, "max_devices": 1})
    assert r.status_code == 201, r.text
    return r.json()["plan"]


def pay_on_chain(client: httpx.Client, plan: dict) -> dict:
    option = payment_option(client)
    r = client.post("/invoices", headers={"Idempotency-Key": uuid.uuid4().hex},
                    json={"plan_id": plan["id"], **option})
    assert r.status_code == 201, r.text
    invoice = r.json()["invoice"]
    assert client.post("/sandbox/transfers", json={
        "address": invoice["address"], "amount_asset": invoice["amount_asset"],
        "asset": invoice["asset"], "network": invoice["network"]}).status_code == 201
    assert client.post("/sandbox/blocks", json={"count": 3}).status_code == 200
    wait_for(lambda: client.get(f"/invoices/{invoice['id']}").json()["invoice"]["status"]
             == "PAID", message="the invoice paid")
    return invoice


def test_a_friend_signs_up_with_the_link_pays_and_the_referrer_is_rewarded_once(
        stack, gateway_url, admin_client):
    referrer = register(gateway_url)
    mine = referrer.get("/referrals")
    assert mine.status_code == 200, mine.text
    code = mine.json()["code"]
    assert mine.json() == {"code": code, "link": f"{test_env()['APP_BASE_URL']}/r/{code}",
                           "invited": 0, "paid": 0, "reward_total_usd": "0.00",
                           "reward_total_days": 0}
    assert referrer.get("/referrals").json()["code"] == code  # one code, kept

    stranger = sign_up(gateway_url, "nosuchcode")  # ignored, never an error
    friend = sign_up(gateway_url, code.upper())  # codes are case-insensitive
    friend_id = user_id_of(friend)
    wait_for(lambda: referral_recorded(friend_id), message="the referral recorded")
    assert not referral_recorded(user_id_of(stranger))
    assert referrer.get("/referrals").json()["invited"] == 1

    invoice = pay_on_chain(friend, plan_priced(admin_client, "9.99"))
    wait_for(lambda: referrer.get("/balance").json()["balance_usd"] == "1.00",
             message="the referrer rewarded")
    pay_on_chain(friend, plan_priced(admin_client, "5.00"))  # a second purchase: no reward
    entries = referrer.get("/balance").json()["entries"]
    assert [(e["kind"], e["amount_usd"], e["invoice_id"]) for e in entries] == [
        ("REFERRAL_REWARD", "1.00", invoice["id"])]
    counts = referrer.get("/referrals").json()
    assert (counts["invited"], counts["paid"], counts["reward_total_usd"]) == (1, 1, "1.00")
    assert friend.get("/referrals").json()["invited"] == 0  # the friend has a code of their own

    refund = admin_client.post(f"/admin/invoices/{invoice['id']}/refund",
                               json={"reason": "the friend asked"})
    assert refund.status_code == 200, refund.text
    assert referrer.get("/balance").json()["balance_usd"] == "0.00"
    assert referrer.get("/balance").json()["entries"][0]["kind"] == "ADJUSTMENT"
    counts = referrer.get("/referrals").json()
    assert (counts["paid"], counts["reward_total_usd"]) == (0, "0.00")
    rewarded = sql("SELECT count(*) AS n FROM billing.outbox WHERE routing_key = "
                   "'billing.referral.rewarded.v1' AND envelope->'payload'->>'referred_user_id' "
                   "= $1", friend_id)
    assert rewarded[0]["n"] == 1
