"""Helpers for the campaign runner's tests."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any


def watch_deferrals(runner: Any) -> asyncio.Event:
    """An event set each time the runner's pacer defers a contact (the pacer still defers it)."""
    deferred = asyncio.Event()
    defer = runner.pacer.defer

    def observed_defer(number: str, until: datetime, reason: str = "") -> None:
        defer(number, until, reason)
        deferred.set()

    runner.pacer.defer = observed_defer
    return deferred
