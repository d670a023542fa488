"""Campaign calling-window deferral: a contact outside its window waits for the window to open
(result ``deferred``), is checked again then, and gets its final outcome."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time

from phoneagent.records.campaign import Contact, PacingConfig, next_window_open
from phoneagent.records.campaign_runner import CampaignRunner, RunnerConfig
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Delivery
from phoneagent.v1 import policy_pb2
from support.campaign import watch_deferrals

NY = "America/New_York"
T0 = datetime(2026, 3, 2, 2, 30, tzinfo=UTC)  # 21:30 on Sunday in New York (EST, UTC-5)


def test_window_opens_next_morning_in_callee_zone() -> None:
    opens = next_window_open(T0, [NY], time(8), time(21))
    assert opens == datetime(2026, 3, 2, 13, 0, tzinfo=UTC)  # 08:00 EST


def test_window_already_open_is_now() -> None:
    noon = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)
    assert next_window_open(noon, [NY], time(8), time(21)) == noon


def test_window_must_be_open_in_every_zone() -> None:
    opens = next_window_open(T0, [NY, "America/Los_Angeles"], time(8), time(21))
    assert opens == datetime(2026, 3, 2, 16, 0, tzinfo=UTC)  # 08:00 in Los Angeles, 11:00 in New York


def test_no_zone_or_no_overlap_has_no_opening() -> None:
    assert next_window_open(T0, [], time(8), time(21)) is None
    assert next_window_open(T0, ["Asia/Tokyo", "America/Los_Angeles"], time(8), time(9)) is None


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


async def test_runner_defers_outside_window_then_checks_again(bus: Bus) -> None:
    checks: list[datetime] = []
    clock = FakeClock()
    first_check = asyncio.Event()

    async def policy(check: policy_pb2.DialCheck, _: Delivery) -> policy_pb2.PolicyDecision:
        checks.append(clock.now)
        first_check.set()
        if len(checks) == 1:
            return policy_pb2.PolicyDecision(
                decision=policy_pb2.DECISION_DENY, rule="calling_window", reason="outside calling window"
            )
        return policy_pb2.PolicyDecision(
            decision=policy_pb2.DECISION_DENY, rule="consent", reason="no valid consent"
        )

    sub = await bus.serve(subjects.dial_check(), policy_pb2.DialCheck, policy, queue_group="policy")
    contact = Contact(number="+12125550111", name="Ann", time_zone=NY, purpose="reminder")
    config = RunnerConfig(
        campaign_id="camp-window-t", purpose="reminder", pacing=PacingConfig(), max_idle_s=0.05
    )
    runner = CampaignRunner(bus, [contact], config, clock=clock)
    deferred = watch_deferrals(runner)
    run = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(first_check.wait(), 5.0)
        await asyncio.wait_for(deferred.wait(), 5.0)
        assert runner.pacer.results()[0].state == "deferred"
        waiting = runner.pacer.results()[0]
        assert waiting.due_at == datetime(2026, 3, 2, 13, 1, tzinfo=UTC)  # window opens + 1 min margin
        assert waiting.attempts == 0 and waiting.outcome is None
        assert waiting.reason.startswith("calling_window")
        assert not run.done() and len(checks) == 1  # nothing happens before the window opens
        clock.now = datetime(2026, 3, 2, 13, 1, tzinfo=UTC)
        results = await asyncio.wait_for(run, 5.0)
    finally:
        run.cancel()
        await bus.unsubscribe(sub)
    assert checks == [T0, datetime(2026, 3, 2, 13, 1, tzinfo=UTC)]
    (final,) = results
    assert final.outcome is not None and final.outcome.value == "denied"
    assert final.reason.startswith("consent")
