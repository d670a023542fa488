"""Try the next engine when one fails: the core of every stage's fallback adapter.

An engine is passed over when it fails with a retryable error or reports itself
unavailable (its model or library is missing); a bad request (invalid argument), a
cancellation or an internal error is raised at once, since the next engine would fail the
same way. A stream falls back only while nothing has been delivered: once part of a
transcript, an utterance or a reply has gone out, a second engine must not repeat it.
Every hand-over is counted in ``pa_engine_fallbacks_total``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator, Sequence
from typing import Generic, Protocol, TypeVar

from phoneagent.runtime import metrics
from phoneagent.runtime.errors import ErrorKind, InvalidArgument, PhoneAgentError

log = logging.getLogger(__name__)

T = TypeVar("T")


class _Named(Protocol):
    name: str


E = TypeVar("E", bound=_Named)

_UNAVAILABLE = frozenset({ErrorKind.UNAVAILABLE, ErrorKind.MODEL_UNAVAILABLE})


def falls_back(error: BaseException) -> bool:
    """Whether ``error`` hands the call to the next engine."""
    return isinstance(error, PhoneAgentError) and (error.retryable or error.kind in _UNAVAILABLE)


class Fallback(Generic[E]):
    """Engines in order of preference, for one stage; each call starts with the first."""

    def __init__(self, stage: str, engines: Sequence[E]) -> None:
        if not engines:
            raise InvalidArgument("a fallback needs at least one engine")
        self.stage = stage
        self.engines = tuple(engines)

    def call(self, op: Callable[[E], T]) -> T:
        """``op(engine)`` with the first engine that does not fail over."""
        last = len(self.engines) - 1
        for i, engine in enumerate(self.engines):
            try:
                return op(engine)
            except PhoneAgentError as exc:
                if i == last or not falls_back(exc):
                    raise
                self._handed_over(engine, self.engines[i + 1], exc)
        raise AssertionError("unreachable")

    def iterate(self, op: Callable[[E], Iterator[T]]) -> Generator[T, None, None]:
        """The items of ``op(engine)``, from the next engine while none was yielded."""
        last = len(self.engines) - 1
        for i, engine in enumerate(self.engines):
            delivered = False
            stream = op(engine)
            try:
                for item in stream:
                    delivered = True
                    yield item
                return
            except PhoneAgentError as exc:
                if delivered or i == last or not falls_back(exc):
                    raise
                self._handed_over(engine, self.engines[i + 1], exc)
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()

    async def aiterate(self, op: Callable[[E], AsyncIterator[T]]) -> AsyncGenerator[T, None]:
        """The items of ``op(engine)``, from the next engine while none was yielded."""
        last = len(self.engines) - 1
        for i, engine in enumerate(self.engines):
            delivered = False
            stream = op(engine)
            try:
                async for item in stream:
                    delivered = True
                    yield item
                return
            except PhoneAgentError as exc:
                if delivered or i == last or not falls_back(exc):
                    raise
                self._handed_over(engine, self.engines[i + 1], exc)
            finally:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()

    def _handed_over(self, failed: E, to: E, error: PhoneAgentError) -> None:
        metrics.ENGINE_FALLBACKS.labels(stage=self.stage, from_engine=failed.name, to_engine=to.name).inc()
        log.warning(
            "engine failed, trying the next one",
            extra={
                "stage": self.stage,
                "engine": failed.name,
                "next_engine": to.name,
                "kind": error.kind.name.lower(),
            },
        )
