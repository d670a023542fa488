"""Post-call summaries through the ``PA_WORK`` JetStream work queue: the records side.

After ``call.ended`` the :class:`SummaryRequester` publishes the call's (already redacted)
transcript as a job on ``pa.v1.work.llm.summarize``, with ``Nats-Msg-Id summary-<call id>`` so
a second publish (another replica, a redelivered event) is dropped. An llm replica takes the job
from the durable consumer ``llm-summaries`` when its engine is free (:mod:`phoneagent.llm.summaries`)
and publishes the answer on ``pa.v1.work.records.summary``; the requester's consumer task
(durable consumer ``records-summaries``) stores it in the record's summary column and
acknowledges it. Jobs and results stay in the stream until acknowledged, so they survive
restarts of either side, and the jobs waiting are the backlog KEDA scales on. The messages and
the pull loop both sides use are in :mod:`phoneagent.runtime.summary_work`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from phoneagent.records.builder import CallRecord
from phoneagent.records.store import RecordStore
from phoneagent.runtime import streams, subjects
from phoneagent.runtime.errors import ErrorKind, PhoneAgentError, Unavailable
from phoneagent.runtime.summary_work import (
    MAX_TRANSCRIPT_CHARS,
    MSG_ID,
    bus_closed,
    decode_result,
    deliveries,
    from_message,
    pulled,
    settle,
)
from phoneagent.runtime.tasks import TaskOwner, retry, with_timeout
from phoneagent.v1 import records_pb2

log = logging.getLogger(__name__)


def transcript_text(rec: CallRecord) -> str:
    """One ``role: text`` line per turn (the record's turns are stored redacted)."""
    lines = [f"{t.role}: {t.text.strip()}" for t in rec.turns if t.text.strip()]
    return "\n".join(lines)[-MAX_TRANSCRIPT_CHARS:]


class SummaryRequester:
    """Records side: queue a summary job on ``call.ended``, store the results (owned task)."""

    def __init__(
        self,
        bus: Any,
        store: RecordStore,
        *,
        publish_timeout_s: float = 5.0,
        fetch_timeout_s: float = 1.0,
        retry_delay_s: float = 2.0,
        max_deliveries: int = 5,  # a result that cannot be stored this often is terminated
    ) -> None:
        self.bus = bus
        self.store = store
        self.publish_timeout_s = publish_timeout_s
        self.fetch_timeout_s = fetch_timeout_s
        self.retry_delay_s = retry_delay_s
        self.max_deliveries = max_deliveries
        self.queued = 0  # jobs published (a duplicate the stream dropped is not counted)
        self.stored = 0  # summaries stored on their records
        self.failed = 0  # error results: the llm could not summarize the call
        self.rejected = 0  # malformed results, terminated
        self.finished = asyncio.Event()  # set when a call's result is handled (stored or failed)
        self._tasks = TaskOwner("records:summaries")
        self._consumer: asyncio.Task[None] | None = None
        self._psub: Any = None
        self._stopping = asyncio.Event()

    @property
    def healthy(self) -> bool:
        """False once the result consumer has ended while not stopping."""
        return self._stopping.is_set() or (self._consumer is not None and not self._consumer.done())

    async def start(self) -> None:
        js = self.bus.jetstream()
        self._psub = await streams.work_subscription(js, subjects.RECORDS_SUMMARIES_CONSUMER)
        self._consumer = self._tasks.spawn(self._consume(), "results")

    async def stop(self, timeout: float = 2.0) -> None:
        """Let the consumer finish its fetch and the result in hand, then cancel what is left."""
        self._stopping.set()
        if self._consumer is not None:
            await asyncio.wait({self._consumer}, timeout=timeout)
        await self._tasks.close(timeout=timeout)
        psub, self._psub = self._psub, None
        if psub is not None and not bus_closed(self.bus):  # the durable consumer stays
            try:
                await psub.unsubscribe()
            except Exception as exc:
                log.warning("summary results unsubscribe failed", extra={"error": type(exc).__name__})

    # --- jobs ----------------------------------------------------------------------------------
    async def on_events(self, rec: CallRecord, events: list[str]) -> None:
        if "call.ended" not in events:
            return
        text = transcript_text(rec)
        if not text:
            return
        job = records_pb2.SummaryRequest(call_id=rec.call_id, transcript=text)
        try:
            ack = await retry(lambda: self._publish_job(job), what="summary job", attempts=3, base_delay=0.2)
        except PhoneAgentError as exc:
            log.warning("call summary not queued", extra={"call_id": rec.call_id, "error": exc.kind.name})
            return
        if not getattr(ack, "duplicate", False):
            self.queued += 1
            log.info("call summary queued", extra={"call_id": rec.call_id})

    async def _publish_job(self, job: records_pb2.SummaryRequest) -> Any:
        js = self.bus.jetstream()
        try:
            return await with_timeout(
                js.publish(
                    subjects.WORK_SUMMARIZE,
                    job.SerializeToString(),
                    stream=subjects.WORK_STREAM,
                    headers={MSG_ID: subjects.summary_job_id(job.call_id)},
                    timeout=self.publish_timeout_s,
                ),
                self.publish_timeout_s + 1.0,
                "summary job publish",
            )
        except PhoneAgentError:
            raise
        except Exception as exc:  # no JetStream (reconnecting, stream missing): retried, then logged
            raise Unavailable(f"summary job publish failed ({type(exc).__name__})") from None

    # --- results -------------------------------------------------------------------------------
    async def _consume(self) -> None:
        async for msgs in pulled(
            self.bus, self._psub, 16, self.fetch_timeout_s, self._stopping, "summary results consumer"
        ):
            for msg in msgs:
                await self._handle(msg)

    async def _handle(self, msg: Any) -> None:
        """Store one result and ack it; never raises (a bad result must not stop the consumer)."""
        try:
            result = decode_result(msg.data)
        except PhoneAgentError:
            self.rejected += 1
            log.warning("summary result rejected", extra={"reason": "malformed", "size": len(msg.data)})
            await settle(msg, "term")
            return
        call_id = result.call_id
        if result.HasField("error"):
            self.failed += 1
            failure = ErrorKind.from_wire(result.error.kind).name
            log.warning("call summary failed", extra={"call_id": call_id, "error": failure})
            await settle(msg, "ack")
            self.finished.set()
            return
        try:
            found = await asyncio.to_thread(self.store.set_summary, call_id, from_message(result))
        except Exception as exc:  # the database is away: again later, up to max_deliveries times
            kind = exc.kind.name if isinstance(exc, PhoneAgentError) else "INTERNAL"
            if deliveries(msg) < self.max_deliveries:
                log.warning("call summary not stored; will retry", extra={"call_id": call_id, "error": kind})
                await settle(msg, "nak", delay=self.retry_delay_s)
            else:
                log.error(
                    "call summary dropped after repeated failures", extra={"call_id": call_id, "error": kind}
                )
                await settle(msg, "term")
            return
        await settle(msg, "ack")
        if found:
            self.stored += 1
            log.info("call summary stored", extra={"call_id": call_id})
        else:  # purged (retention) before its summary came
            log.warning("call summary for an unknown call", extra={"call_id": call_id})
        self.finished.set()
