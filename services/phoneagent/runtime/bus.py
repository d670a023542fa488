"""The NATS bus: two lanes, typed protobuf messages, bounded hand-off, graceful drain.

* Two connections: the **data** lane carries audio, text and lifecycle; the **control**
  lane (barge-in, cancel, hangup, transfer, DTMF, session claims) has its own TCP
  connection, so a control event never queues behind audio bytes in a socket buffer.
* A subscription decodes and validates each message, then hands it to a bounded queue
  drained by its own task: a slow handler never stalls the nats-py reader, and the
  queue's drop policy decides what is lost under overload (control: nothing).
* Malformed, oversized or mislabelled messages are counted, logged (without payload)
  and dropped; the service keeps serving.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any

from google.protobuf.message import Message
from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from phoneagent.runtime import metrics, subjects, telemetry
from phoneagent.runtime.bus_auth import BusAuth
from phoneagent.runtime.errors import ErrorKind, PhoneAgentError, Unavailable
from phoneagent.runtime.messages import (
    DEFAULT_MAX_BYTES,
    Delivery,
    Handler,
    Lane,
    M,
    RejectedMessage,
    Responder,
    decode,
    event_meta,
    subject_kind,
)
from phoneagent.runtime.queues import BoundedQueue, DropPolicy
from phoneagent.runtime.subscription import Subscription
from phoneagent.runtime.tasks import TaskOwner
from phoneagent.v1 import control_pb2

# The bus's public names; the message and subscription types live in their own modules.
__all__ = [
    "DEFAULT_MAX_BYTES",
    "Bus",
    "Delivery",
    "Handler",
    "Lane",
    "RejectedMessage",
    "Responder",
    "Subscription",
    "decode",
    "event_meta",
    "subject_kind",
]

log = logging.getLogger(__name__)


async def _connect_once(options: dict[str, Any], timeout: float) -> NatsClient:
    nc = NatsClient()
    try:
        await asyncio.wait_for(nc.connect(**options), timeout)
    except BaseException:
        try:
            await nc.close()
        except Exception:
            pass
        raise
    return nc


class Bus:
    """Connections to NATS for one service process."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.data: NatsClient | None = None
        self.control: NatsClient | None = None
        self.tasks = TaskOwner(f"bus:{name}")
        self._subs: list[Subscription[Any]] = []
        self._connected = asyncio.Event()
        # The server's last refusals of this user's publishes and subscriptions (bus_auth).
        self.denied: collections.deque[str] = collections.deque(maxlen=64)
        self._closing = False
        # When either lane last (re)connected (monotonic seconds; 0 before the first connect):
        # what was missed while the connection was down is not known until some time after it.
        self.connected_at = 0.0

    @property
    def connected(self) -> bool:
        return bool(self.data and self.data.is_connected and self.control and self.control.is_connected)

    async def connect(
        self,
        url: str,
        *,
        connect_timeout: float = 5.0,
        connect_deadline: float = 0.0,
        auth: BusAuth | None = None,
    ) -> None:
        """Connect both lanes as the NATS user of ``auth`` (default: the one the environment
        names, see :meth:`BusAuth.from_env`). Until ``connect_deadline`` seconds have passed, a
        server that is not up yet is tried again with back-off (0.25 s doubling to 5 s); after
        it, Unavailable. Once connected, nats-py reconnects on its own for as long as the
        process lives."""
        self._closing = False
        servers = [u.strip() for u in url.split(",") if u.strip()]
        credentials = (auth if auth is not None else BusAuth.from_env()).connect_options()

        async def on_error(exc: Exception) -> None:
            text = str(exc)
            if "permissions violation" in text.lower():
                # the server refused a publish or subscription this user may not make (the
                # text names the subject: ids, no payload)
                self.denied.append(text.removeprefix("nats: "))
                log.warning("nats permission denied", extra={"detail": text[:200]})
                return
            log.warning("nats error", extra={"error": type(exc).__name__})

        async def on_disconnect() -> None:
            if self._closing:  # our own close(): nothing went wrong
                return
            log.warning("nats disconnected")

        async def on_reconnect() -> None:
            self.connected_at = time.monotonic()
            log.info("nats reconnected")

        def opts(lane: str) -> dict[str, Any]:
            return dict(
                servers=servers,
                name=f"{self.name}:{lane}",
                connect_timeout=connect_timeout,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                ping_interval=10,
                max_outstanding_pings=3,
                error_cb=on_error,
                disconnected_cb=on_disconnect,
                reconnected_cb=on_reconnect,
                pending_size=8 * 1024 * 1024,
                **credentials,
            )

        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, connect_deadline)
        delay, attempt = 0.25, 0
        while True:
            attempt += 1
            try:
                # nats-py keeps trying a refused first connect when reconnect is on: bound each try.
                per_try = max(0.5, min(connect_timeout + 1.0, deadline - loop.time()))
                self.data = await _connect_once(opts("data"), per_try)
                self.control = await _connect_once(opts("control"), per_try)
                self.connected_at = time.monotonic()
                break
            except Exception as exc:
                await self.close()
                left = deadline - loop.time()
                if left <= 0:
                    raise Unavailable(
                        f"cannot connect to NATS after {attempt} attempt(s) ({type(exc).__name__})"
                    ) from None
                log.warning(
                    "nats not reachable; retrying",
                    extra={"attempt": attempt, "retry_in_s": round(min(delay, left), 2)},
                )
                await asyncio.sleep(min(delay, left))
                delay = min(delay * 2, 5.0)
        self._connected.set()

    def _nc(self, lane: Lane) -> NatsClient:
        nc = self.control if lane is Lane.CONTROL else self.data
        if nc is None:
            raise Unavailable("bus not connected")
        return nc

    async def publish(
        self,
        subject: str,
        msg: Message,
        *,
        lane: Lane = Lane.DATA,
        headers: dict[str, str] | None = None,
        trace: bool = False,
    ) -> None:
        """Publish ``msg``. ``trace=True`` injects W3C trace context (per turn, not per frame)."""
        hdrs = dict(headers or {})
        if isinstance(msg, control_pb2.ControlEvent) and subjects.is_control(subject):
            # each kind on its own subject: the bus permissions say who may send which kind
            kind = msg.WhichOneof("kind") or subjects.CONTROL_UNSET
            subject = f"{subject}.{kind}"
        if trace:
            telemetry.inject(hdrs)
        try:
            await self._nc(lane).publish(subject, msg.SerializeToString(), headers=hdrs or None)
        except PhoneAgentError:
            raise
        except Exception as exc:
            raise Unavailable(f"publish failed ({type(exc).__name__})") from None
        metrics.BUS_MESSAGES.labels(kind=subject_kind(subject), direction="out").inc()

    async def subscribe(
        self,
        subject: str,
        msg_type: type[M],
        handler: Handler[M],
        *,
        lane: Lane = Lane.DATA,
        queue_group: str = "",
        max_pending: int = 256,
        drop: DropPolicy | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> Subscription[M]:
        """Subscribe with decode + validation and a bounded hand-off queue.

        Control-lane subscriptions never drop; data-lane ones drop the oldest by default.
        """
        if drop is None:
            drop = DropPolicy.NEVER if lane is Lane.CONTROL else DropPolicy.DROP_OLDEST
        if subjects.is_control(subject):
            subject = f"{subject}.*"  # every kind of the call's control events (see publish)
        q: BoundedQueue[tuple[M, Delivery]] = BoundedQueue(
            f"{self.name}:{subject_kind(subject)}", max_pending, drop
        )
        sub = Subscription(self, subject, msg_type, handler, q, max_bytes)
        sub._worker = self.tasks.spawn(sub._run(), f"sub:{subject_kind(subject)}")
        sub._sub = await self._nc(lane).subscribe(
            subject,
            queue=queue_group,
            cb=sub._on_msg,
            pending_msgs_limit=65536,
            pending_bytes_limit=64 * 1024 * 1024,
        )
        self._subs.append(sub)
        try:  # the subscription is live on the server when this returns
            await self._nc(lane).flush(timeout=2)
        except Exception:
            pass  # reconnecting: nats-py re-subscribes on reconnect
        return sub

    async def unsubscribe(self, sub: Subscription[Any], drain_timeout: float = 0.0) -> None:
        """Stop ``sub``; see :meth:`Subscription.unsubscribe` for ``drain_timeout``."""
        if sub in self._subs:
            self._subs.remove(sub)
        await sub.unsubscribe(drain_timeout)

    async def request(
        self,
        subject: str,
        msg: Message,
        reply_type: type[M],
        *,
        timeout: float = 2.0,
        lane: Lane = Lane.CONTROL,
        headers: dict[str, str] | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> M:
        """Send ``msg`` and wait for one reply of ``reply_type`` (at most ``max_bytes``)."""
        try:
            raw = await self._nc(lane).request(
                subject, msg.SerializeToString(), timeout=timeout, headers=headers or None
            )
        except NoRespondersError:
            raise Unavailable(f"no responders on {subject_kind(subject)}") from None
        except NatsTimeout:
            raise PhoneAgentError(
                ErrorKind.TIMEOUT, f"request on {subject_kind(subject)} timed out"
            ) from None
        try:
            return decode(reply_type, raw.subject, raw.data, max_bytes)
        except RejectedMessage as exc:
            raise PhoneAgentError(ErrorKind.INTERNAL, f"bad reply ({exc.reason})") from None

    async def serve(
        self,
        subject: str,
        msg_type: type[M],
        responder: Responder[M],
        *,
        queue_group: str = "",
        lane: Lane = Lane.CONTROL,
        max_pending: int = 1024,
    ) -> Subscription[M]:
        """Answer requests on ``subject``; the responder returns the reply message."""

        async def handle(msg: M, delivery: Delivery) -> None:
            reply = await responder(msg, delivery)
            if delivery.reply:
                await self._nc(lane).publish(delivery.reply, reply.SerializeToString())

        return await self.subscribe(
            subject,
            msg_type,
            handle,
            lane=lane,
            queue_group=queue_group,
            max_pending=max_pending,
            drop=DropPolicy.DROP_NEWEST,
        )

    def jetstream(self) -> Any:
        return self._nc(Lane.DATA).jetstream()

    async def drain(self, timeout: float = 5.0) -> None:
        """Stop receiving, deliver what is queued, flush, close (graceful shutdown).

        Every subscription stops receiving first; then each worker hands its queued messages
        to the handler (handlers may still publish: the connections stay open) until the
        deadline; then the connections flush what was published and close.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        subs = list(self._subs)
        await asyncio.gather(*(s.stop_receiving(graceful=True) for s in subs), return_exceptions=True)
        await asyncio.gather(
            *(s.unsubscribe(drain_timeout=max(0.01, deadline - loop.time())) for s in subs),
            return_exceptions=True,
        )
        for s in subs:
            if s in self._subs:
                self._subs.remove(s)
        for nc in (self.data, self.control):
            if nc is not None and nc.is_connected:
                try:
                    await asyncio.wait_for(nc.flush(), max(0.1, deadline - loop.time()))
                except Exception:
                    pass
        await self.close()

    async def close(self) -> None:
        self._closing = True
        for sub in list(self._subs):
            await sub.unsubscribe()
        self._subs.clear()
        await self.tasks.close(timeout=2.0)
        for nc in (self.data, self.control):
            if nc is not None and not nc.is_closed:
                try:
                    await nc.close()
                except Exception:
                    pass
