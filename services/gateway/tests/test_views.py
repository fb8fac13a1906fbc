"""What the dashboard's renewal banner is about (`views.renewal_due`), a pure decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.web.views import renewal_due

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def sub(status: str = "ACTIVE", days: float = 3, plan_id: str = "p1", **auto) -> dict:
    return {"id": "s1", "plan_id": plan_id, "status": status,
            "expires_at": (NOW + timedelta(days=days)).isoformat(),
            "auto_renew": {"enabled": False, "plan_id": None, "next_attempt_at": None, **auto}}


def test_no_banner_far_from_the_end_or_without_a_subscription():
    assert renewal_due(None, NOW) is None
    assert renewal_due(sub(days=8), NOW) is None
    assert renewal_due(sub("SUSPENDED"), NOW) is None
    assert renewal_due(sub("CANCELED"), NOW) is None


def test_a_banner_within_seven_days_links_the_plans_checkout():
    due = renewal_due(sub(days=7), NOW)
    assert (due["expired"], due["auto_renew"], due["pay_url"]) == (False, False, "/app/buy/p1")


def test_after_a_trial_the_banner_links_the_plans_and_renewal_waits_for_a_plan():
    due = renewal_due(sub(plan_id="trial", enabled=True), NOW)
    assert (due["plan_id"], due["auto_renew"], due["pay_url"]) == (None, False, "/app/buy")
    chosen = renewal_due({**sub(plan_id="trial"), "auto_renew": {
        "enabled": True, "plan_id": "p2", "next_attempt_at": None}}, NOW)
    assert (chosen["plan_id"], chosen["auto_renew"], chosen["pay_url"]) == (
        "p2", True, "/app/buy/p2")


def test_an_ended_subscription_gets_the_banner_and_auto_renewal_no_longer_applies():
    due = renewal_due(sub("EXPIRED", days=-2, enabled=True), NOW)
    assert (due["expired"], due["auto_renew"]) == (True, False)
