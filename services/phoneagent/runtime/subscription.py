"""A decoded, queued subscription: the nats-py callback only decodes and queues, and one worker
task per subscription hands each message to the handler, so a slow handler never stalls the
reader and the queue's drop policy decides what is lost under overload."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Generic

from nats.aio.msg import Msg

from phoneagent.runtime import metrics, subjects
from phoneagent.runtime.errors import PhoneAgentError
from phoneagent.runtime.logs import call_id_var
from phoneagent.runtime.messages import Delivery, Handler, M, RejectedMessage, decode, subject_kind
from phoneagent.runtime.queues import BoundedQueue, QueueClosed

if TYPE_CHECKING:
    from phoneagent.runtime.bus import Bus

log = logging.getLogger(__name__)


class Subscription(Generic[M]):
    """A decoded, queued subscription; its worker task calls the handler one message at a time."""

    def __init__(
        self,
        bus: Bus,
        subject: str,
        msg_type: type[M],
        handler: Handler[M],
        queue: BoundedQueue[tuple[M, Delivery]],
        max_bytes: int,
    ) -> None:
        self.bus = bus
        self.subject = subject
        self.msg_type = msg_type
        self.handler = handler
        self.queue = queue
        self.max_bytes = max_bytes
        self.kind = subject_kind(subject)
        self.received = 0
        self.rejected = 0
        self._sub: Any = None
        self._worker: asyncio.Task[None] | None = None

    async def _on_msg(self, raw: Msg) -> None:
        try:
            msg = decode(self.msg_type, raw.subject, raw.data, self.max_bytes)
        except RejectedMessage as exc:
            self.rejected += 1
            metrics.BUS_REJECTED.labels(kind=self.kind, reason=exc.reason).inc()
            log.warning(
                "dropped bad message",
                extra={
                    "subject_kind": subject_kind(raw.subject),
                    "reason": exc.reason,
                    "size": len(raw.data),
                },
            )
            return
        self.received += 1
        metrics.BUS_MESSAGES.labels(kind=self.kind, direction="in").inc()
        self.queue.put((msg, Delivery(raw.subject, raw.reply or "", dict(raw.headers or {}))))

    async def _run(self) -> None:
        while True:
            try:
                msg, delivery = await self.queue.get()
            except QueueClosed:
                return
            token = call_id_var.set(subjects.call_id_of(delivery.subject) or "")
            try:
                await self.handler(msg, delivery)
            except asyncio.CancelledError:
                raise
            except PhoneAgentError as exc:
                metrics.ERRORS.labels(kind=exc.kind.name.lower()).inc()
                log.warning(
                    "handler error",
                    extra={"subject_kind": self.kind, "error_kind": exc.kind.name, "error": exc.message},
                )
            except Exception as exc:  # one bad message must never kill the subscription
                metrics.ERRORS.labels(kind="internal").inc()
                log.error("handler crashed", exc_info=exc, extra={"subject_kind": self.kind})
            finally:
                call_id_var.reset(token)

    async def stop_receiving(self, graceful: bool = False) -> None:
        """Remove interest on the server. ``graceful``: first take in what nats-py already
        holds for this subscription (a flush round trip); otherwise that is discarded."""
        sub, self._sub = self._sub, None
        if sub is None:
            return
        if graceful:
            try:
                await asyncio.wait_for(sub.drain(), 2.0)
                return
            except Exception:  # closed or reconnecting: nothing more will arrive anyway
                pass
        try:
            await sub.unsubscribe()
        except Exception:  # connection already closed
            pass

    async def unsubscribe(self, drain_timeout: float = 0.0) -> None:
        """Stop the subscription.

        ``drain_timeout=0`` (call teardown): what is still queued is discarded at once, since
        it belongs to a call that is over. ``drain_timeout>0`` (graceful shutdown): the worker
        first hands every queued message to the handler, for at most that many seconds.
        """
        await self.stop_receiving(graceful=drain_timeout > 0)
        self.queue.close()  # the worker finishes what is queued, then sees QueueClosed
        worker = self._worker
        if worker is None or worker.done():
            return
        if drain_timeout > 0:
            done, _ = await asyncio.wait({worker}, timeout=drain_timeout)
            if done:
                return
            log.warning(
                "drain timed out; dropping queued messages",
                extra={"subject_kind": self.kind, "dropped": len(self.queue)},
            )
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
