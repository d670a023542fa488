"""Names of protobuf enum values that never raise.

proto3 keeps enum values it does not know (a newer peer, or a hostile one), and
``Enum.Name`` raises ``ValueError`` for them. Logging, metrics labels and records
use these helpers so an unknown value becomes a label instead of an exception in
the middle of a call.
"""

from __future__ import annotations

from typing import Any


def enum_name(enum: Any, value: int, *, prefix: str = "", unknown: str = "UNKNOWN") -> str:
    """``enum.Name(value)`` without ``prefix``; ``unknown`` for a value the enum does not define."""
    try:
        return str(enum.Name(value)).removeprefix(prefix)
    except ValueError:
        return unknown
