"""One message off the wire: the lane it travels on, where it came from, and the checks that
decode it (size, parse, the call id in the subject matches the one in the message)."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from google.protobuf.message import DecodeError, Message

from phoneagent.runtime import subjects

M = TypeVar("M", bound=Message)

DEFAULT_MAX_BYTES = 256 * 1024


class Lane(enum.Enum):
    DATA = "data"
    CONTROL = "control"


@dataclass(frozen=True)
class Delivery:
    """Where a message came from."""

    subject: str
    reply: str
    headers: dict[str, str]


Handler = Callable[[M, Delivery], Awaitable[None]]
Responder = Callable[[M, Delivery], Awaitable[Message]]


class RejectedMessage(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def subject_kind(subject: str) -> str:
    """A low-cardinality label for a subject: its tokens without ids (for metrics and logs)."""
    parts = subject.split(".")
    if len(parts) >= 4 and parts[2] in ("call", "ctl", "audit"):
        return ".".join([parts[2]] + parts[4:]) if len(parts) > 4 else parts[2]
    return ".".join(parts[2:]) if len(parts) > 2 else subject


def event_meta(msg: Message) -> Any:
    """The EventMeta of a message: its ``meta`` field, or that of its set oneof member."""
    desc = msg.DESCRIPTOR
    if "meta" in desc.fields_by_name:
        return msg.meta  # type: ignore[attr-defined]
    for oneof in desc.oneofs:
        which = msg.WhichOneof(oneof.name)
        if which:
            inner = getattr(msg, which)
            if "meta" in inner.DESCRIPTOR.fields_by_name:
                return inner.meta
    return None


def decode(msg_type: type[M], subject: str, data: bytes, max_bytes: int) -> M:
    """Parse and validate one message; raise RejectedMessage with a reason otherwise."""
    if len(data) > max_bytes:
        raise RejectedMessage("oversized")
    out = msg_type()
    try:
        out.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError):
        raise RejectedMessage("malformed") from None
    call_id = subjects.call_id_of(subject)
    if call_id is not None and not subject.startswith(subjects.AUDIT_PREFIX):
        meta = event_meta(out)
        if meta is not None and meta.call_id != call_id:
            # Garbage often parses as a message of unknown fields; the ids must match the subject.
            raise RejectedMessage("call_id_mismatch")
    return out
