"""The ``PA_WORK`` summary queue's messages and pull loop, shared by both sides.

The records side queues :class:`~phoneagent.v1.records_pb2.SummaryRequest` jobs on
``pa.v1.work.llm.summarize`` and stores the :class:`~phoneagent.v1.records_pb2.CallSummary`
answers from ``pa.v1.work.records.summary`` (:mod:`phoneagent.records.summary`); the llm side
takes the jobs and publishes the answers (:mod:`phoneagent.llm.summaries`). What both need --
the message codec, the fields a summary carries, settling and pulling JetStream messages -- lives
here so neither imports the other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from google.protobuf.message import DecodeError

from phoneagent.runtime import subjects
from phoneagent.runtime.errors import InvalidArgument, PhoneAgentError
from phoneagent.v1 import common_pb2, records_pb2

log = logging.getLogger(__name__)
_Work = TypeVar("_Work", records_pb2.SummaryRequest, records_pb2.CallSummary)
MSG_ID = "Nats-Msg-Id"
FIELDS = ("name", "callback_number", "appointment")  # the fields a summary fills in
MAX_TRANSCRIPT_CHARS = 6000  # the end of a transcript a job carries (and the model reads)


def to_message(call_id: str, summary: dict[str, Any]) -> records_pb2.CallSummary:
    return records_pb2.CallSummary(
        call_id=call_id,
        summary=summary["summary"],
        intent=summary["intent"],
        outcome=summary["outcome"],
        fields=summary["fields"],
    )


def error_reply(call_id: str, exc: PhoneAgentError) -> records_pb2.CallSummary:
    err = common_pb2.Error(
        kind=exc.kind.wire,  # type: ignore[arg-type]
        retryable=exc.retryable,
        message=exc.message,
        source="llm",
    )
    return records_pb2.CallSummary(call_id=call_id, error=err)


def from_message(msg: records_pb2.CallSummary) -> dict[str, Any]:
    return {
        "summary": msg.summary,
        "intent": msg.intent,
        "outcome": msg.outcome,
        "fields": {k: msg.fields.get(k, "") for k in FIELDS},
    }


def _decode_work(msg: _Work, data: bytes, what: str) -> _Work:
    try:
        msg.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError):
        raise InvalidArgument(f"{what} is not a {type(msg).__name__}") from None
    subjects.check_id(msg.call_id)
    return msg


def decode_job(data: bytes) -> records_pb2.SummaryRequest:
    """A summary job from the work queue; InvalidArgument when it is not one."""
    return _decode_work(records_pb2.SummaryRequest(), data, "summary job")


def decode_result(data: bytes) -> records_pb2.CallSummary:
    """A summary result from the work queue; InvalidArgument when it is not one."""
    return _decode_work(records_pb2.CallSummary(), data, "summary result")


async def settle(msg: Any, how: str, **kwargs: Any) -> None:
    """ack / nak / term a JetStream message; a failure only logs (the ack wait redelivers it)."""
    try:
        await getattr(msg, how)(**kwargs)
    except Exception as exc:
        log.warning("work message not settled", extra={"how": how, "error": type(exc).__name__})


def deliveries(msg: Any) -> int:
    try:
        return int(msg.metadata.num_delivered)
    except Exception:
        return 1


async def fetch(psub: Any, batch: int, timeout: float) -> list[Any]:
    """One pull; [] when nothing came within ``timeout``. Raises only for a broken connection."""
    try:
        return list(await psub.fetch(batch, timeout=timeout))
    except TimeoutError:  # nats.errors.TimeoutError, and the plain one nats-py's batch fetch raises
        return []


def bus_closed(bus: Any) -> bool:
    """The bus was closed (shutdown): a consumer loop ends instead of retrying."""
    nc = getattr(bus, "data", None)
    return nc is None or bool(nc.is_closed)


async def pulled(
    bus: Any, psub: Any, batch: int, timeout_s: float, stopping: asyncio.Event, what: str
) -> AsyncIterator[list[Any]]:
    """Batches from a durable pull consumer until ``stopping`` is set or the bus is closed. A
    failed fetch (reconnecting) is logged and tried again a second later."""
    while not stopping.is_set():
        try:
            msgs = await fetch(psub, batch, timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if bus_closed(bus):
                log.info(f"{what} ends: bus closed")
                return
            log.warning(f"{what} fetch failed", extra={"error": type(exc).__name__})
            try:
                await asyncio.wait_for(stopping.wait(), 1.0)
            except TimeoutError:
                pass
            continue
        yield msgs
