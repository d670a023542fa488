"""The runtime pieces every stage's engines share: the one retry policy, the engine registry and
the fallback core (stage by stage they are checked in each stage's engine contract test)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from phoneagent.runtime import retry
from phoneagent.runtime.engines import EngineRegistry
from phoneagent.runtime.errors import (
    EngineFailure,
    ErrorKind,
    InvalidArgument,
    PhoneAgentError,
    Unavailable,
)
from phoneagent.runtime.fallback import Fallback, falls_back
from phoneagent.runtime.modelfiles import MissingModelError
from phoneagent.runtime.retry import Interrupted, RetryPolicy
from prometheus_client import REGISTRY

QUICK = RetryPolicy(retries=2, backoff_s=0.0)


def script(*steps: object) -> tuple[list[int], object]:
    """A callable that raises or returns ``steps`` in turn; the list counts its calls."""
    calls = [0]
    queue = list(steps)

    def op() -> object:
        calls[0] += 1
        step = queue.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step

    return calls, op


def test_the_policy_waits_longer_each_retry_up_to_its_cap() -> None:
    policy = RetryPolicy(retries=5, backoff_s=0.2, max_backoff_s=0.5)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [0.2, 0.4, 0.5, 0.5]
    assert policy.should_retry(EngineFailure("x"), 5) and not policy.should_retry(EngineFailure("x"), 6)
    assert not policy.should_retry(InvalidArgument("x"), 1)
    assert not policy.should_retry(ValueError("not ours"), 1)
    with pytest.raises(InvalidArgument):
        RetryPolicy(retries=-1)


def test_a_call_is_retried_only_on_retryable_errors_and_only_so_often() -> None:
    slept: list[float] = []
    calls, op = script(Unavailable("a"), PhoneAgentError(ErrorKind.TIMEOUT, "b"), "done")
    policy = RetryPolicy(retries=2, backoff_s=0.1)
    assert retry.call(op, policy, sleep=slept.append) == "done"  # type: ignore[arg-type]
    assert calls == [3] and slept == [0.1, 0.2]

    calls, op = script(Unavailable("a"), Unavailable("b"), Unavailable("c"), "never")
    with pytest.raises(Unavailable):
        retry.call(op, QUICK)  # type: ignore[arg-type]
    assert calls == [3]

    calls, op = script(InvalidArgument("bad"), "never")
    with pytest.raises(InvalidArgument):
        retry.call(op, QUICK)  # type: ignore[arg-type]
    assert calls == [1]


def test_a_stream_is_opened_again_only_while_nothing_was_yielded() -> None:
    opened: list[int] = []

    def stream(fail_after: int | None) -> Iterator[int]:
        opened.append(1)
        for i in range(3):
            if fail_after == i:
                raise EngineFailure("broke")
            yield i

    plan = [0, None]  # the first stream fails before its first item, the second runs through
    assert list(retry.iterate(lambda: stream(plan.pop(0)), QUICK)) == [0, 1, 2]
    assert len(opened) == 2

    opened.clear()
    with pytest.raises(EngineFailure):
        list(retry.iterate(lambda: stream(1), QUICK))  # item 0 went out: no second try
    assert len(opened) == 1


async def test_an_interrupt_during_the_back_off_ends_the_wait() -> None:
    interrupt = asyncio.Event()

    async def failing() -> AsyncIterator[int]:
        interrupt.set()  # e.g. the caller aborted while the first try failed
        raise Unavailable("down")
        yield 0  # an async generator

    policy = RetryPolicy(retries=1, backoff_s=30.0, max_backoff_s=30.0)
    with pytest.raises(Interrupted) as err:
        await asyncio.wait_for(_drain(retry.aiterate(failing, policy, interrupt=interrupt)), 5.0)
    assert err.value.kind is ErrorKind.CANCELLED


async def _drain(stream: AsyncIterator[int]) -> list[int]:
    return [i async for i in stream]


def test_the_registry_builds_engines_by_name_and_names_the_extra_when_a_library_is_missing() -> None:
    registry: EngineRegistry[object] = EngineRegistry("Test", aliases={"frac": "fraction"})
    registry.register("fraction", "fractions:Fraction", extra="maths")
    registry.register("ghost", "a_library_nobody_installed:Engine", extra="ghost-gpu", package="ghost")
    assert registry.names() == ("fraction", "ghost")
    assert registry.create("frac", numerator=1, denominator=2) == 0.5
    with pytest.raises(InvalidArgument, match="unknown Test engine 'nope'; choose one of fraction, ghost"):
        registry.create("nope")
    with pytest.raises(MissingModelError) as err:
        registry.create("ghost")
    assert err.value.extra == "ghost-gpu" and "phone-agent[ghost-gpu]" in str(err.value)


@dataclass
class Named:
    name: str
    error: PhoneAgentError | None = None

    def run(self) -> str:
        if self.error is not None:
            raise self.error
        return self.name


def fallbacks(stage: str, a: str, b: str) -> float:
    labels = {"stage": stage, "from_engine": a, "to_engine": b}
    return REGISTRY.get_sample_value("pa_engine_fallbacks_total", labels) or 0.0


def test_the_next_engine_answers_when_one_fails_over_and_each_hand_over_is_counted() -> None:
    assert falls_back(Unavailable("x")) and falls_back(MissingModelError("no weights"))
    assert not falls_back(InvalidArgument("x")) and not falls_back(ValueError("x"))
    before = fallbacks("unit", "gpu", "cpu")
    chain = Fallback("unit", [Named("gpu", MissingModelError("no CUDA")), Named("cpu")])
    assert chain.call(Named.run) == "cpu"
    assert fallbacks("unit", "gpu", "cpu") == before + 1

    refusing = Fallback("unit", [Named("gpu", InvalidArgument("bad input")), Named("cpu")])
    with pytest.raises(InvalidArgument):
        refusing.call(Named.run)
    last = Fallback("unit", [Named("gpu", Unavailable("a")), Named("cpu", Unavailable("b"))])
    with pytest.raises(Unavailable, match="b"):
        last.call(Named.run)
    assert fallbacks("unit", "gpu", "cpu") == before + 2
    with pytest.raises(InvalidArgument):
        Fallback("unit", [])


async def test_a_stream_falls_back_only_before_its_first_item() -> None:
    async def items(engine: Named, fail_at: int) -> AsyncIterator[str]:
        for i in range(2):
            if engine.error is not None and i == fail_at:
                raise engine.error
            yield f"{engine.name}{i}"

    chain = Fallback("unit", [Named("gpu", EngineFailure("x")), Named("cpu")])
    assert [i async for i in chain.aiterate(lambda e: items(e, 0))] == ["cpu0", "cpu1"]
    with pytest.raises(EngineFailure):
        [i async for i in chain.aiterate(lambda e: items(e, 1))]  # gpu0 went out: no hand-over
