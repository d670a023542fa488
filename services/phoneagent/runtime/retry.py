"""The one retry and back-off policy, used by every engine's base class.

An operation is retried only when it failed with a retryable error (see
:class:`~phoneagent.runtime.errors.ErrorKind`) and, for a stream, only while nothing has been
delivered yet: once a caller has seen part of a result, repeating it would repeat what was
heard. The n-th retry waits ``backoff_s * n`` (capped at ``max_backoff_s``); an asynchronous
wait ends early when the caller's ``interrupt`` event is set (an abort), which raises
:class:`Interrupted`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from dataclasses import dataclass
from typing import TypeVar

from phoneagent.runtime.errors import ErrorKind, InvalidArgument, PhoneAgentError

log = logging.getLogger(__name__)

T = TypeVar("T")

# Called before each retry with (the retry's number from 1, the error that caused it).
OnRetry = Callable[[int, PhoneAgentError], None]


class Interrupted(PhoneAgentError):
    """The caller's interrupt event was set while waiting to retry."""

    def __init__(self) -> None:
        super().__init__(ErrorKind.CANCELLED, "interrupted while waiting to retry")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failed call is tried again."""

    retries: int = 2  # tries after the first one
    backoff_s: float = 0.2  # wait before the first retry; the n-th waits n times this
    max_backoff_s: float = 2.0

    def __post_init__(self) -> None:
        if self.retries < 0 or self.backoff_s < 0 or self.max_backoff_s < 0:
            raise InvalidArgument("retries and back-off must not be negative")

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (from 1)."""
        return min(self.backoff_s * retry, self.max_backoff_s)

    def should_retry(self, error: BaseException, retry: int) -> bool:
        """Whether ``error`` warrants retry number ``retry`` (from 1)."""
        return isinstance(error, PhoneAgentError) and error.retryable and retry <= self.retries


DEFAULT_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy(retries=0)


def call(
    op: Callable[[], T],
    policy: RetryPolicy,
    *,
    on_retry: OnRetry | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``op()``, retried under ``policy`` (blocking: for worker threads)."""
    retry = 0
    while True:
        try:
            return op()
        except PhoneAgentError as exc:
            retry += 1
            if not policy.should_retry(exc, retry):
                raise
            _note(retry, exc, on_retry)
        sleep(policy.delay(retry))


def iterate(
    open_stream: Callable[[], Iterator[T]], policy: RetryPolicy, *, on_retry: OnRetry | None = None
) -> Generator[T, None, None]:
    """The items of ``open_stream()``, opened again under ``policy`` while none was yielded."""
    retry = 0
    while True:
        stream = open_stream()
        delivered = False
        try:
            for item in stream:
                delivered = True
                yield item
            return
        except PhoneAgentError as exc:
            retry += 1
            if delivered or not policy.should_retry(exc, retry):
                raise
            _note(retry, exc, on_retry)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        time.sleep(policy.delay(retry))


async def aiterate(
    open_stream: Callable[[], AsyncIterator[T]],
    policy: RetryPolicy,
    *,
    interrupt: asyncio.Event | None = None,
    on_retry: OnRetry | None = None,
) -> AsyncGenerator[T, None]:
    """The items of ``open_stream()``, opened again under ``policy`` while none was yielded.

    Raises :class:`Interrupted` instead of retrying when ``interrupt`` is set before or
    during the back-off wait.
    """
    retry = 0
    while True:
        stream = open_stream()
        delivered = False
        try:
            async for item in stream:
                delivered = True
                yield item
            return
        except PhoneAgentError as exc:
            retry += 1
            if delivered or not policy.should_retry(exc, retry):
                raise
            _note(retry, exc, on_retry)
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
        await wait(policy.delay(retry), interrupt)


async def wait(seconds: float, interrupt: asyncio.Event | None) -> None:
    """Sleep ``seconds``; raise :class:`Interrupted` if ``interrupt`` is set first."""
    if interrupt is None:
        await asyncio.sleep(seconds)
        return
    if interrupt.is_set():
        raise Interrupted()
    try:
        await asyncio.wait_for(interrupt.wait(), seconds)
    except TimeoutError:
        return
    raise Interrupted()


def _note(retry: int, error: PhoneAgentError, on_retry: OnRetry | None) -> None:
    log.debug("retrying after a retryable error", extra={"retry": retry, "kind": error.kind.name.lower()})
    if on_retry is not None:
        on_retry(retry, error)
