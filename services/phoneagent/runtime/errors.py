"""A closed set of error kinds, each with a retryable flag.

Errors that cross the bus carry the kind and a safe, fixed message — never a
``repr`` of an exception or a stack trace.
"""

from __future__ import annotations

import enum


class ErrorKind(enum.Enum):
    # name = (wire value in phoneagent.v1.ErrorKind, retryable)
    INVALID_ARGUMENT = (1, False)
    UNAVAILABLE = (2, True)
    TIMEOUT = (3, True)
    OVERLOADED = (4, True)
    NOT_FOUND = (5, False)
    MODEL_UNAVAILABLE = (6, False)
    ENGINE_FAILURE = (7, True)
    POLICY_DENIED = (8, False)
    CANCELLED = (9, False)
    INTERNAL = (10, False)

    @property
    def wire(self) -> int:
        return self.value[0]

    @property
    def retryable(self) -> bool:
        return self.value[1]

    @classmethod
    def from_wire(cls, value: int) -> ErrorKind:
        for kind in cls:
            if kind.wire == value:
                return kind
        return cls.INTERNAL


class PhoneAgentError(Exception):
    """Base error: a kind plus a message that is safe to log and send."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    @property
    def retryable(self) -> bool:
        return self.kind.retryable

    def __str__(self) -> str:
        return f"{self.kind.name.lower()}: {self.message}"


class InvalidArgument(PhoneAgentError):
    def __init__(self, message: str) -> None:
        super().__init__(ErrorKind.INVALID_ARGUMENT, message)


class Unavailable(PhoneAgentError):
    def __init__(self, message: str) -> None:
        super().__init__(ErrorKind.UNAVAILABLE, message)


class EngineFailure(PhoneAgentError):
    def __init__(self, message: str) -> None:
        super().__init__(ErrorKind.ENGINE_FAILURE, message)
