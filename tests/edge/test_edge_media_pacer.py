import asyncio
import random

import pytest
from phoneagent.edge.media.pacer import Pacer


class FakeClock:
    """Jumps straight to each deadline, plus a random oversleep like a busy event loop."""

    def __init__(self, start: float = 1000.0, oversleep=lambda: 0.0) -> None:
        self.t = start
        self.oversleep = oversleep

    def now(self) -> float:
        return self.t

    async def sleep_until(self, deadline: float) -> None:
        self.t = max(self.t, deadline) + self.oversleep()


async def test_ten_minutes_of_ticks_do_not_drift() -> None:
    rng = random.Random(1)
    clock = FakeClock(oversleep=lambda: rng.uniform(0, 0.004))  # up to 4 ms late every tick
    pacer = Pacer(0.02, clock=clock)

    async def run() -> list:
        return [t async for t in pacer.ticks(30_000)]

    ticks = await asyncio.wait_for(run(), timeout=60)
    start = pacer.start
    assert start == 1000.0
    assert [t.index for t in ticks] == list(range(30_000))
    last = ticks[-1]
    assert last.deadline == pytest.approx(start + 29_999 * 0.02, abs=1e-9)
    # Lateness never accumulates: every tick fires within one oversleep of its own deadline.
    assert max(t.lateness for t in ticks) <= 0.004 + 1e-9
    assert last.now - (start + 29_999 * 0.02) <= 0.004 + 1e-9
    assert pacer.skipped == 0


async def test_stall_skips_missed_ticks_instead_of_bursting() -> None:
    clock = FakeClock(start=0.0)
    pacer = Pacer(0.02, clock=clock, max_catch_up=3)
    first = await pacer.next_tick()
    clock.t += 0.5  # the event loop was blocked for half a second
    late = await pacer.next_tick()
    after = await pacer.next_tick()
    assert first.index == 0
    assert late.index == 1 + 24 and pacer.skipped == 24
    assert after.index == late.index + 1 and after.deadline == pytest.approx(0.02 * after.index)


async def test_short_delay_is_caught_up_without_skipping() -> None:
    clock = FakeClock(start=0.0)
    pacer = Pacer(0.02, clock=clock, max_catch_up=3)
    await pacer.next_tick()
    clock.t += 0.05
    ticks = [await pacer.next_tick() for _ in range(4)]
    assert [t.index for t in ticks] == [1, 2, 3, 4] and pacer.skipped == 0


async def test_restart_reanchors() -> None:
    clock = FakeClock(start=5.0)
    pacer = Pacer(0.02, clock=clock)
    await pacer.next_tick()
    pacer.restart(10.0)
    tick = await pacer.next_tick()
    assert tick.index == 0 and tick.deadline == 10.0 and clock.now() == 10.0


@pytest.mark.slow
async def test_real_time_period_is_20ms() -> None:
    pacer = Pacer(0.02)
    loop = asyncio.get_running_loop()

    async def run() -> list[float]:
        return [loop.time() async for _ in pacer.ticks(51)]

    times = await asyncio.wait_for(run(), timeout=10)
    mean = (times[-1] - times[0]) / 50
    assert abs(mean - 0.02) < 0.001
