"""Outbound dial rules: each denies and allows exactly where it should."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta

import pytest
from phoneagent.policy.outbound import Decision, DialRequest, OutboundConfig, evaluate_dial
from phoneagent.policy.stores import PolicyStores

CALLER_ID = "+12025550100"
NY_NUMBER = "+12125550123"  # 212: New York, Eastern
PHX_NUMBER = "+16025550123"  # 602: Phoenix, no DST
DEN_NUMBER = "+13035550123"  # 303: Denver, Mountain with DST
LA_NUMBER = "+13105550123"  # 310: Los Angeles
PANHANDLE = "+18505550123"  # 850: Florida panhandle, Eastern and Central
NAVAJO = "+19285550123"  # 928: northern Arizona, Phoenix and Navajo Nation (Denver)
PURPOSE = "appointment-reminder"
GRANTED = datetime(2025, 1, 1, tzinfo=UTC)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def stores() -> Iterator[PolicyStores]:
    s = PolicyStores(":memory:")
    yield s
    s.close()


def consented(stores: PolicyStores, *numbers: str) -> None:
    for n in numbers:
        stores.consent.grant(n, PURPOSE, "web form", GRANTED)


def dial(
    stores: PolicyStores,
    number: str,
    now: str,
    tz: str | None = None,
    *,
    caller_id: str | None = CALLER_ID,
    purpose: str = PURPOSE,
    config: OutboundConfig | None = None,
) -> Decision:
    req = DialRequest(number=number, caller_id=caller_id, purpose=purpose, campaign_id="c1", time_zone=tz)
    return evaluate_dial(req, utc(now), stores, config)


def test_allow_returns_rule_reason_and_details(stores: PolicyStores) -> None:
    consented(stores, NY_NUMBER)
    d = dial(stores, "(212) 555-0123", "2026-06-01T14:00")
    assert d.allowed and d.rule == "all_rules" and d.reason
    assert d.details["consent_source"] == "web form"
    assert "America/New_York" in d.details["local_times"]
    assert d.details["number"].endswith("23") and "212" not in d.details["number"]


@pytest.mark.parametrize(
    "caller_id,reason", [(None, "no caller id"), ("  ", "no caller id"), ("5550100", "not a valid E.164")]
)
def test_caller_id_required(stores: PolicyStores, caller_id: str | None, reason: str) -> None:
    consented(stores, NY_NUMBER)
    d = dial(stores, NY_NUMBER, "2026-06-01T14:00", caller_id=caller_id)
    assert not d.allowed and d.rule == "caller_id" and reason in d.reason


@pytest.mark.parametrize(
    "number",
    [
        "",
        "12345",
        "+1 212 555 012",
        "+1 112 555 0123",
        "+1 911 555 0123",
        "212-555-0123 x12",
        "+0123456789",
        "not a number",
    ],
)
def test_invalid_numbers_denied(stores: PolicyStores, number: str) -> None:
    d = dial(stores, number, "2026-06-01T14:00")
    assert not d.allowed and d.rule == "valid_number"


def test_internal_dnc_denies_before_other_rules(stores: PolicyStores) -> None:
    consented(stores, NY_NUMBER)
    stores.dnc.add("212.555.0123", "opt-out on call", utc("2026-05-01T10:00"))
    d = dial(stores, NY_NUMBER, "2026-06-01T14:00")
    assert not d.allowed and d.rule == "internal_dnc"
    assert d.details["dnc_source"] == "opt-out on call"
    assert dial(stores, "+12125550124", "2026-06-01T14:00").rule == "consent"


def test_imported_dnc_names_the_list(stores: PolicyStores) -> None:
    consented(stores, NY_NUMBER, LA_NUMBER)
    stores.imported_dnc.import_csv("national-2026-05", "phone\n2125550123\n", utc("2026-05-01T00:00"))
    d = dial(stores, NY_NUMBER, "2026-06-01T14:00")
    assert not d.allowed and d.rule == "imported_dnc" and d.details["dnc_lists"] == ["national-2026-05"]
    assert dial(stores, LA_NUMBER, "2026-06-01T18:00").allowed


def test_consent_missing_wrong_purpose_expired_revoked(stores: PolicyStores) -> None:
    now = "2026-06-01T14:00"
    d = dial(stores, NY_NUMBER, now)
    assert not d.allowed and d.rule == "consent" and "no consent record" in d.reason
    stores.consent.grant(NY_NUMBER, "marketing", "web form", GRANTED)
    assert dial(stores, NY_NUMBER, now).rule == "consent"
    stores.consent.grant(NY_NUMBER, PURPOSE, "paper form", GRANTED, expires_at=utc("2026-05-31T00:00"))
    d = dial(stores, NY_NUMBER, now)
    assert not d.allowed and "expired" in d.reason
    stores.consent.grant(NY_NUMBER, PURPOSE, "ivr", GRANTED)
    assert dial(stores, NY_NUMBER, now).allowed
    assert stores.consent.revoke(NY_NUMBER, PURPOSE, utc("2026-06-01T12:00")) == 2
    d = dial(stores, NY_NUMBER, now)
    assert not d.allowed and "revoked" in d.reason
    # Revocation applies from its time on, and a fresh grant afterwards counts again.
    assert dial(stores, NY_NUMBER, "2026-06-01T11:59").rule == "calling_window"
    stores.consent.grant(NY_NUMBER, PURPOSE, "called back and agreed", utc("2026-06-01T13:00"))
    assert dial(stores, NY_NUMBER, now).allowed


def test_consent_requires_a_purpose(stores: PolicyStores) -> None:
    consented(stores, NY_NUMBER)
    d = dial(stores, NY_NUMBER, "2026-06-01T14:00", purpose=" ")
    assert not d.allowed and d.rule == "consent"


@pytest.mark.parametrize(
    "now,allowed",
    [
        ("2026-03-07T12:59", False),  # Saturday before spring-forward: 07:59 EST
        ("2026-03-07T13:00", True),  # 08:00 EST
        ("2026-03-08T12:00", True),  # spring-forward Sunday: 08:00 EDT already
        ("2026-03-08T11:59", False),  # 07:59 EDT
        ("2026-03-09T00:59", True),  # 20:59 EDT
        ("2026-03-09T01:00", False),  # 21:00 EDT: end is exclusive
        ("2026-10-31T12:30", True),  # 08:30 EDT
        ("2026-11-01T12:30", False),  # fall-back Sunday: 07:30 EST
        ("2026-11-01T13:00", True),  # 08:00 EST
        ("2026-11-02T01:59", True),  # 20:59 EST
        ("2026-11-02T02:00", False),  # 21:00 EST
    ],
)
def test_calling_window_new_york_dst_edges(stores: PolicyStores, now: str, allowed: bool) -> None:
    consented(stores, NY_NUMBER)
    d = dial(stores, NY_NUMBER, now)
    assert d.allowed is allowed, d
    if not allowed:
        assert d.rule == "calling_window" and "America/New_York" in d.reason


def test_arizona_has_no_dst(stores: PolicyStores) -> None:
    consented(stores, PHX_NUMBER, DEN_NUMBER)
    # July 14:30 UTC: Phoenix 07:30 MST, Denver 08:30 MDT.
    assert dial(stores, PHX_NUMBER, "2026-07-15T14:30").rule == "calling_window"
    assert dial(stores, DEN_NUMBER, "2026-07-15T14:30").allowed
    assert dial(stores, PHX_NUMBER, "2026-07-15T15:00").allowed
    # January: both on MST, same answer.
    assert dial(stores, PHX_NUMBER, "2026-01-15T14:30").rule == "calling_window"
    assert dial(stores, DEN_NUMBER, "2026-01-15T14:30").rule == "calling_window"
    assert dial(stores, PHX_NUMBER, "2026-01-15T15:00").allowed


def test_multi_zone_area_code_needs_every_zone_open(stores: PolicyStores) -> None:
    consented(stores, PANHANDLE, NAVAJO)
    # 12:30 UTC in June: 08:30 EDT but 07:30 CDT.
    d = dial(stores, PANHANDLE, "2026-06-01T12:30")
    assert d.rule == "calling_window" and "America/Chicago" in d.reason
    assert dial(stores, PANHANDLE, "2026-06-01T13:00").allowed
    # 00:30 UTC: 20:30 EDT... still open; 01:00 UTC: 21:00 EDT closed although 20:00 CDT.
    assert dial(stores, PANHANDLE, "2026-06-02T00:30").allowed
    d = dial(stores, PANHANDLE, "2026-06-02T01:00")
    assert d.rule == "calling_window" and "America/New_York" in d.reason
    # 928: Phoenix and the Navajo Nation (Denver rules) differ by an hour in summer.
    assert "America/Denver" in dial(stores, NAVAJO, "2026-07-16T03:30").reason
    assert "America/Phoenix" in dial(stores, NAVAJO, "2026-07-15T14:30").reason
    assert dial(stores, NAVAJO, "2026-07-15T15:00").allowed


def test_explicit_time_zone_overrides_area_code(stores: PolicyStores) -> None:
    consented(stores, NY_NUMBER)
    # 13:30 UTC in June: 09:30 in New York, 06:30 in Los Angeles.
    assert dial(stores, NY_NUMBER, "2026-06-01T13:30").allowed
    d = dial(stores, NY_NUMBER, "2026-06-01T13:30", tz="America/Los_Angeles")
    assert d.rule == "calling_window" and "America/Los_Angeles" in d.reason


def test_unknown_time_zone_denies(stores: PolicyStores) -> None:
    uk, toll_free = "+442079460958", "+18005550123"
    consented(stores, uk, toll_free)
    for number in (uk, toll_free):
        d = dial(stores, number, "2026-06-01T14:00")
        assert d.rule == "calling_window" and "unknown time zone" in d.reason
    assert dial(stores, uk, "2026-06-01T14:00", tz="Europe/London").allowed
    d = dial(stores, uk, "2026-06-01T14:00", tz="Mars/Olympus_Mons")
    assert d.rule == "calling_window" and "unknown time zone" in d.reason


def test_configurable_window(stores: PolicyStores) -> None:
    consented(stores, NY_NUMBER)
    cfg = OutboundConfig(window_start=time(9, 0), window_end=time(20, 0))
    assert dial(stores, NY_NUMBER, "2026-06-01T12:30", config=cfg).rule == "calling_window"  # 08:30
    assert dial(stores, NY_NUMBER, "2026-06-01T13:00", config=cfg).allowed  # 09:00
    assert dial(stores, NY_NUMBER, "2026-06-02T00:00", config=cfg).rule == "calling_window"  # 20:00


def test_daily_cap_counts_the_callees_local_day(stores: PolicyStores) -> None:
    consented(stores, LA_NUMBER)
    cfg = OutboundConfig(max_attempts_per_day=2, max_attempts_total=5)
    # 06:30 UTC June 1 is 23:30 on May 31 in Los Angeles: yesterday for the callee.
    stores.attempts.record(LA_NUMBER, utc("2026-06-01T06:30"), "c1", "no_answer")
    stores.attempts.record(LA_NUMBER, utc("2026-06-01T16:00"), "c1", "busy")
    d = dial(stores, LA_NUMBER, "2026-06-01T18:00", config=cfg)
    assert d.allowed and d.details["attempts_today"] == 1
    stores.attempts.record(LA_NUMBER, utc("2026-06-01T17:00"), "c1", "no_answer")
    d = dial(stores, LA_NUMBER, "2026-06-01T18:00", config=cfg)
    assert not d.allowed and d.rule == "attempts_per_day" and "2 of 2" in d.reason
    # Next local day (June 2, 09:00 PDT) the daily count starts again; the total cap then bites.
    assert dial(stores, LA_NUMBER, "2026-06-02T16:00", config=cfg).allowed
    stores.attempts.record(LA_NUMBER, utc("2026-06-02T16:00"), "c1", "busy")
    stores.attempts.record(LA_NUMBER, utc("2026-06-02T16:30"), "c1", "busy")
    d = dial(stores, LA_NUMBER, "2026-06-02T17:00", config=cfg)
    assert not d.allowed and d.rule == "attempts_per_day"
    d = dial(stores, LA_NUMBER, "2026-06-03T16:00", config=cfg)
    assert not d.allowed and d.rule == "attempts_total" and "5 of 5" in d.reason


def test_invalid_config_rejected() -> None:
    from phoneagent.runtime.errors import InvalidArgument

    with pytest.raises(InvalidArgument):
        OutboundConfig(window_start=time(21), window_end=time(8))
    with pytest.raises(InvalidArgument):
        OutboundConfig(max_attempts_per_day=0)


def test_fails_closed_on_naive_time_and_store_failure(stores: PolicyStores) -> None:
    consented(stores, NY_NUMBER)
    req = DialRequest(NY_NUMBER, CALLER_ID, PURPOSE)
    d = evaluate_dial(req, datetime(2026, 6, 1, 14, 0), stores)
    assert not d.allowed and "timezone-aware" in d.reason
    broken = PolicyStores(":memory:")
    broken.close()
    d = evaluate_dial(req, utc("2026-06-01T14:00"), broken)
    assert not d.allowed and d.rule == "internal_dnc" and "internal error" in d.reason


def test_non_utc_aware_now_is_handled(stores: PolicyStores) -> None:
    consented(stores, NY_NUMBER)
    req = DialRequest(NY_NUMBER, CALLER_ID, PURPOSE)
    from zoneinfo import ZoneInfo

    now = datetime(2026, 6, 1, 7, 30, tzinfo=ZoneInfo("America/Los_Angeles"))  # 10:30 in New York
    assert evaluate_dial(req, now, stores).allowed
    assert not evaluate_dial(req, now - timedelta(hours=3), stores).allowed
