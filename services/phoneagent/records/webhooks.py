"""Signed webhook deliveries of call-record events, retried with exponential back-off.

The records worker's listener enqueues one delivery per configured receiver and event; the
delivery (with the record as it was at that moment) is persisted first, so a restart resumes
the retries. A dispatcher task POSTs due deliveries with bounded concurrency and a timeout,
off the call's real-time path.

Signature: ``X-PhoneAgent-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from phoneagent.agents.fields import Webhook
from phoneagent.records.builder import CallRecord
from phoneagent.records.store import Delivery, RecordStore
from phoneagent.runtime.errors import PhoneAgentError, Unavailable
from phoneagent.runtime.settings import env, positive

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-PhoneAgent-Signature"
_PERMANENT = range(400, 500)
_RETRYABLE_4XX = {408, 425, 429}


def _at_least_one(value: int) -> str | None:
    return None if value >= 1 else "must be at least 1"


@dataclasses.dataclass(frozen=True)
class WebhookSettings:
    max_attempts: int = env("PA_WEBHOOK_MAX_ATTEMPTS", 8, check=_at_least_one, doc="Attempts per delivery")
    base_delay_s: float = env(
        "PA_WEBHOOK_BASE_DELAY_S", 1.0, check=positive, doc="First retry delay; doubles each attempt"
    )
    max_delay_s: float = env("PA_WEBHOOK_MAX_DELAY_S", 300.0, check=positive, doc="Longest retry delay")
    timeout_s: float = env("PA_WEBHOOK_TIMEOUT_S", 5.0, check=positive, doc="Timeout of one POST")
    concurrency: int = env("PA_WEBHOOK_CONCURRENCY", 4, check=_at_least_one, doc="POSTs in flight at most")
    poll_s: float = env("PA_WEBHOOK_POLL_S", 5.0, check=positive, doc="Longest wait between due checks")


def sign(secret: str, body: bytes, t: int | None = None) -> str:
    """The signature header value for ``body`` sent at Unix time ``t``."""
    ts = int(time.time()) if t is None else t
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def verify(
    secret: str, header: str, body: bytes, tolerance_s: float = 300.0, now: float | None = None
) -> bool:
    """Check a signature header (what a receiver does); rejects stale timestamps."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        ts = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    expected = sign(secret, body, ts).split("v1=", 1)[1]
    return hmac.compare_digest(expected, given)


def payload(event: str, rec: CallRecord) -> str:
    """The JSON body: event, timestamp and the call record (without worker bookkeeping)."""
    call = rec.public_dict()
    return json.dumps(
        {"event": event, "timestamp_unix_ms": time.time_ns() // 1_000_000, "call": call},
        separators=(",", ":"),
        sort_keys=True,
    )


def retry_delay(settings: WebhookSettings, attempts: int) -> float:
    """Delay before attempt ``attempts + 1``: base, 2 x base, 4 x base ... capped."""
    return float(min(settings.max_delay_s, settings.base_delay_s * 2 ** max(0, attempts - 1)))


class WebhookDispatcher:
    """Owns the delivery loop and its POST tasks; ``on_events`` is the records worker listener."""

    def __init__(self, store: RecordStore, hooks: Sequence[Webhook], settings: WebhookSettings) -> None:
        self.store = store
        self.hooks = tuple(hooks)
        self.settings = settings
        self._secrets = {h.url: h.secret for h in self.hooks}
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._session: Any = None
        self.delivered = 0
        self.failed = 0
        self.changed = asyncio.Event()  # set after each settled attempt (status and tests wait on it)

    async def start(self) -> None:
        if self.hooks:
            await self._open_session()
        self._loop_task = asyncio.create_task(self._loop(), name="records:webhooks")

    async def _open_session(self) -> None:
        try:
            import aiohttp
        except ImportError:
            raise Unavailable("webhooks need aiohttp: install the edge or llm extra") from None
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s))

    async def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._wake.set()
        tasks = [t for t in (self._loop_task, *self._inflight.values()) if t is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def on_events(self, rec: CallRecord, events: list[str]) -> None:
        """Persist one delivery per matching receiver and event, then wake the dispatcher."""
        queued = 0
        for event in events:
            body = payload(event, rec)
            for hook in self.hooks:
                if event in hook.events:
                    await asyncio.to_thread(
                        self.store.enqueue_delivery, rec.call_id, rec.agent, event, hook.url, body
                    )
                    queued += 1
        if queued:
            log.info("webhooks queued", extra={"call_id": rec.call_id, "count": queued})
            self._wake.set()

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            wait_s = self.settings.poll_s
            try:
                due = await asyncio.to_thread(self.store.due_deliveries, time.time_ns(), 64)
                for d in due:
                    if d.id not in self._inflight:
                        self._inflight[d.id] = asyncio.create_task(self._deliver(d), name="records:webhook")
                nxt = await asyncio.to_thread(self.store.next_delivery_at)
                if nxt is not None:
                    wait_s = min(wait_s, max(0.01, (nxt - time.time_ns()) / 1e9))
            except PhoneAgentError as exc:
                log.warning("webhook queue unavailable", extra={"error": exc.kind.name})
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), wait_s)
            except TimeoutError:
                pass

    async def _deliver(self, d: Delivery) -> None:
        try:
            async with self._slots:
                code, error = await self._post(d)
            await asyncio.to_thread(self._settle, d, code, error)
        except PhoneAgentError as exc:
            log.warning("webhook state not saved", extra={"call_id": d.call_id, "error": exc.kind.name})
        finally:
            self._inflight.pop(d.id, None)
            self.changed.set()
            self._wake.set()

    async def _post(self, d: Delivery) -> tuple[int, str]:
        secret = self._secrets.get(d.url)
        if secret is None or self._session is None:
            return 0, "receiver no longer configured"
        body = d.body.encode()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body)}
        headers["X-PhoneAgent-Delivery"] = d.id
        try:
            async with self._session.post(d.url, data=body, headers=headers) as resp:
                await resp.read()
                return resp.status, "" if resp.status < 300 else f"http {resp.status}"
        except TimeoutError:
            return 0, "timeout"
        except Exception as exc:  # connection refused, DNS, TLS ...
            return 0, type(exc).__name__

    def _settle(self, d: Delivery, code: int, error: str) -> None:
        attempts = d.attempts + 1
        if 200 <= code < 300:
            status, next_ns = "delivered", 0
            self.delivered += 1
        elif (code in _PERMANENT and code not in _RETRYABLE_4XX) or attempts >= self.settings.max_attempts:
            status, next_ns = "failed", 0
            self.failed += 1
        elif d.url not in self._secrets:
            status, next_ns = "failed", 0
            self.failed += 1
        else:
            status = "pending"
            next_ns = time.time_ns() + int(retry_delay(self.settings, attempts) * 1e9)
        self.store.record_attempt(d.id, status, attempts, code, error, next_ns)
        extra = {"call_id": d.call_id, "event": d.event, "attempts": attempts, "code": code, "status": status}
        log.info("webhook attempt", extra=extra)
