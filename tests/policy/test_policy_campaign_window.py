"""The campaign runner waits for the calling window that policy applies: a narrower window than the
runner's default (from the denial's ``window`` detail, or PA_CALL_WINDOW_* in the CLI) is waited
for once, not re-checked (and re-audited) every minute."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta

import pytest
from phoneagent.policy.outbound import DialRequest, OutboundConfig, evaluate_dial
from phoneagent.policy.stores import PolicyStores
from phoneagent.records.campaign import Contact, PacingConfig
from phoneagent.records.campaign_cli import _policy_window
from phoneagent.records.campaign_runner import CampaignRunner, RunnerConfig, parse_window
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Delivery
from phoneagent.runtime.errors import InvalidArgument
from phoneagent.v1 import policy_pb2
from support.campaign import watch_deferrals

NY = "America/New_York"
NINE_NY = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # 09:00 EST: open for 08-21, closed for 10-18


class FakeClock:
    def __init__(self) -> None:
        self.now = NINE_NY

    def __call__(self) -> datetime:
        return self.now


async def deferral(bus: Bus, details: dict[str, str], config: RunnerConfig) -> tuple[datetime | None, int]:
    """Run a one-contact campaign against a policy that denies for the window; (due time, checks)."""
    checks: list[datetime] = []
    clock = FakeClock()

    async def policy(check: policy_pb2.DialCheck, _: Delivery) -> policy_pb2.PolicyDecision:
        checks.append(clock.now)
        d = policy_pb2.PolicyDecision(
            decision=policy_pb2.DECISION_DENY, rule="calling_window", reason="outside calling window"
        )
        d.details.update(details)
        return d

    sub = await bus.serve(subjects.dial_check(), policy_pb2.DialCheck, policy, queue_group="policy")
    runner = CampaignRunner(
        bus, [Contact(number="+12125550111", time_zone=NY, purpose="r")], config, clock=clock
    )
    deferred = watch_deferrals(runner)
    run = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(deferred.wait(), 5.0)
        clock.now += timedelta(minutes=5)  # a few idle loops later: still no second check
        await asyncio.sleep(0.2)  # let the run loop look at the clock (max_idle_s=0.05) several times
        return runner.pacer.results()[0].due_at, len(checks)
    finally:
        run.cancel()
        await bus.unsubscribe(sub)


def config(**kw: object) -> RunnerConfig:
    return RunnerConfig(campaign_id="camp-win-t", purpose="r", pacing=PacingConfig(), max_idle_s=0.05, **kw)  # type: ignore[arg-type]


async def test_waits_for_the_window_policy_names(bus: Bus) -> None:
    due, checks = await deferral(bus, {"window": "10:00-18:00"}, config())
    assert due == datetime(2026, 3, 2, 15, 1, tzinfo=UTC)  # 10:00 EST + the 1 min margin
    assert checks == 1


async def test_disagreeing_window_does_not_recheck_every_minute(bus: Bus) -> None:
    due, checks = await deferral(bus, {}, config())  # an older policy: no window detail
    assert due == NINE_NY + timedelta(minutes=15) and checks == 1


async def test_configured_runner_window_is_used_without_the_detail(bus: Bus) -> None:
    due, _ = await deferral(bus, {}, config(window_start=time(10), window_end=time(18)))
    assert due == datetime(2026, 3, 2, 15, 1, tzinfo=UTC)


def test_policy_names_its_window_in_a_window_denial() -> None:
    with PolicyStores(":memory:") as stores:
        stores.consent.grant("+12125550111", "r", "web", datetime(2026, 1, 1, tzinfo=UTC))
        req = DialRequest(number="+12125550111", caller_id="+14155550100", purpose="r", time_zone=None)
        cfg = OutboundConfig(window_start=time(10), window_end=time(18))
        d = evaluate_dial(req, NINE_NY, stores, cfg)
    assert d.rule == "calling_window" and d.details["window"] == "10:00-18:00"
    assert parse_window("10:00-18:00") == (time(10), time(18))
    assert parse_window("") is None and parse_window("18:00-10:00") is None and parse_window("x") is None


def test_cli_runner_uses_the_policy_window_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PA_CALL_WINDOW_START", "10:00")
    monkeypatch.setenv("PA_CALL_WINDOW_END", "18:30")
    assert _policy_window() == (time(10), time(18, 30))
    monkeypatch.setenv("PA_CALL_WINDOW_END", "6pm")
    with pytest.raises(InvalidArgument, match="PA_CALL_WINDOW_END"):
        _policy_window()
