"""Claiming per-call sessions for stateful stages, heartbeats and reassignment.

ASR, LLM, TTS and policy hold per-call state. When a call starts, the edge asks each
stage for a session with a request to the stage's queue group: exactly one replica
answers and records its ownership in the ``pa_sessions_<stage>`` key-value bucket with a
create-if-absent. Replicas publish a heartbeat (with the calls they own) every
``heartbeat_s``. When a replica is silent for ``dead_after_s``, the others race to take
over its calls with a compare-and-set on the ownership record: one wins each call and
starts the session again, typically within ``dead_after_s + heartbeat_s`` (~2 s).

After the bus reconnects, a replica adopts nothing for ``adopt_grace_s`` (default
``dead_after_s``): the heartbeats it missed while disconnected would make live peers look
dead, and taking their calls would give a call two owners answering at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from nats.errors import Error as NatsError
from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError

from phoneagent.runtime import metrics, streams, subjects
from phoneagent.runtime.bus import Bus, Delivery, Lane
from phoneagent.runtime.errors import ErrorKind, PhoneAgentError
from phoneagent.runtime.logs import call_id_var
from phoneagent.runtime.tasks import TaskOwner, retry
from phoneagent.v1 import call_pb2, common_pb2, session_pb2

log = logging.getLogger(__name__)
CALL_ENDED = "call ended"  # the reason a session is closed with when its call has ended
# A claim's ownership record waits this long for a bucket without a leader (the claim request
# itself times out after 2 s at the edge, which then asks again).
CLAIM_STORE_WAIT_S = 1.5
# How long a claim waits out an unavailable store or stage. A stream whose leader's NATS server
# is lost elects another only after a follower's election timeout, 4-9 s at random in
# nats-server (minElectionTimeoutDefault..maxElectionTimeoutDefault, server/raft.go), and a split
# vote takes a second round: 20 s covers both while the caller hears ringing.
CLAIM_WAIT_OUT_S = 20.0


class Session(Protocol):
    """One call's state in one stage. Created by the stage's factory, closed by the host."""

    async def start(self) -> None: ...

    async def close(self, reason: str) -> None: ...


SessionFactory = Callable[[session_pb2.SessionClaim, bool], Awaitable[Session]]


@dataclass
class _Owned:
    session: Session
    revision: int
    record: session_pb2.SessionRecord


def _error(kind: ErrorKind, message: str) -> common_pb2.Error:
    return common_pb2.Error(kind=kind.wire, retryable=kind.retryable, message=message)  # type: ignore[arg-type]


class SessionHost:
    """Owns the sessions of one stage replica."""

    def __init__(
        self,
        bus: Bus,
        stage: str,
        replica_id: str,
        factory: SessionFactory,
        *,
        heartbeat_s: float = 0.5,
        dead_after_s: float = 1.5,
        max_sessions: int = 50,
        adopt_grace_s: float | None = None,
    ) -> None:
        self.bus = bus
        self.stage = stage
        self.replica_id = replica_id
        self.factory = factory
        self.heartbeat_s = heartbeat_s
        self.dead_after_s = dead_after_s
        self.max_sessions = max_sessions
        self.adopt_grace_s = dead_after_s if adopt_grace_s is None else adopt_grace_s
        self.sessions: dict[str, _Owned] = {}
        self.draining = False
        self._peers: dict[str, tuple[float, frozenset[str], bool]] = {}
        self._kv: Any = None
        self._started_at = 0.0
        self._tasks = TaskOwner(f"sessions:{stage}")
        self._lock = asyncio.Lock()
        self._subs: list[Any] = []
        self._gauge = metrics.ACTIVE_SESSIONS.labels(stage=stage)

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self._kv = await streams.sessions_kv(self.bus.jetstream(), self.stage)
        self._started_at = time.monotonic()
        self._subs.append(
            await self.bus.subscribe(
                subjects.session_heartbeat(self.stage),
                session_pb2.Heartbeat,
                self._on_heartbeat,
                lane=Lane.CONTROL,
            )
        )
        self._subs.append(
            await self.bus.subscribe(
                subjects.ALL_LIFECYCLE, call_pb2.CallEvent, self._on_lifecycle, lane=Lane.CONTROL
            )
        )
        self._claims = await self.bus.serve(
            subjects.session_claim(self.stage),
            session_pb2.SessionClaim,
            self._on_claim,
            queue_group=self.stage,
        )
        self._tasks.spawn(self._heartbeat_loop(), "heartbeat")
        self._tasks.spawn(self._monitor_loop(), "monitor")

    async def drain(self, timeout: float) -> None:
        """Stop taking calls; let sessions end on their own up to ``timeout``; hand the rest over."""
        self.draining = True
        await self.bus.unsubscribe(self._claims)
        await self._publish_heartbeat()
        deadline = time.monotonic() + timeout
        # Calls end on their own (CallEnded closes them); check ten times a second until the deadline.
        while self.sessions and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        for call_id in list(self.sessions):
            await self._release(call_id)

    async def close(self) -> None:
        await self._tasks.close(timeout=2.0)
        for call_id in list(self.sessions):
            owned = self.sessions.pop(call_id)
            await self._close_session(call_id, owned.session, "shutdown")
        self._gauge.set(0)

    # --- claims ------------------------------------------------------------------------------
    async def _on_claim(self, claim: session_pb2.SessionClaim, _: Delivery) -> session_pb2.SessionAssigned:
        call_id = claim.call.meta.call_id
        out = session_pb2.SessionAssigned(stage=self.stage, call_id=call_id)
        try:
            subjects.check_id(call_id)
        except PhoneAgentError as exc:
            out.error.CopyFrom(_error(exc.kind, exc.message))
            return out
        if self.draining or len(self.sessions) >= self.max_sessions:
            metrics.SESSION_CLAIMS.labels(stage=self.stage, outcome="overloaded").inc()
            out.error.CopyFrom(_error(ErrorKind.OVERLOADED, "replica full or draining"))
            return out
        key = subjects.check_id(call_id)
        record = session_pb2.SessionRecord(
            replica_id=self.replica_id, claim=claim, claimed_unix_ns=time.time_ns()
        )
        async with self._lock:
            if call_id in self.sessions:
                out.replica_id, out.existing = self.replica_id, True
                return out
            try:
                revision = await self._create(key, record.SerializeToString())
            except KeyWrongLastSequenceError:
                owner = await self._owner(key)
                out.replica_id, out.existing = (owner.replica_id if owner else ""), True
                metrics.SESSION_CLAIMS.labels(stage=self.stage, outcome="existing").inc()
                return out
            except NatsError as exc:
                # The ownership bucket had no leader all along (a NATS server lost, its copies
                # electing another): a retryable answer, so the edge asks again.
                log.warning(
                    "session claim not stored", extra={"stage": self.stage, "error": type(exc).__name__}
                )
                out.error.CopyFrom(_error(ErrorKind.UNAVAILABLE, "session store unavailable"))
                return out
            ok = await self._start_session(call_id, claim, revision, record, taken_over=False)
        if not ok:
            out.error.CopyFrom(_error(ErrorKind.ENGINE_FAILURE, "session failed to start"))
            return out
        out.replica_id = self.replica_id
        metrics.SESSION_CLAIMS.labels(stage=self.stage, outcome="claimed").inc()
        return out

    async def _create(self, key: str, value: bytes) -> int:
        """Create the ownership record, trying again for up to ``CLAIM_STORE_WAIT_S`` while the
        bucket answers nothing (no leader for a moment); a record that exists is not retried."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLAIM_STORE_WAIT_S
        delay = 0.05
        while True:
            try:
                return int(await self._kv.create(key, value))
            except KeyWrongLastSequenceError:
                raise
            except NatsError:
                if loop.time() + delay > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.4)

    async def _start_session(
        self,
        call_id: str,
        claim: session_pb2.SessionClaim,
        revision: int,
        record: session_pb2.SessionRecord,
        taken_over: bool,
    ) -> bool:
        token = call_id_var.set(call_id)
        try:
            session = await self.factory(claim, taken_over)
            await session.start()
        except Exception as exc:
            log.error("session start failed", exc_info=exc, extra={"stage": self.stage})
            try:
                await self._kv.delete(subjects.check_id(call_id), last=revision)
            except Exception:
                pass
            return False
        finally:
            call_id_var.reset(token)
        self.sessions[call_id] = _Owned(session, revision, record)
        self._gauge.set(len(self.sessions))
        log.info("session started", extra={"stage": self.stage, "call_id": call_id, "taken_over": taken_over})
        return True

    async def _owner(self, key: str) -> session_pb2.SessionRecord | None:
        try:
            entry = await self._kv.get(key)
        except (KeyNotFoundError, KeyDeletedError):
            return None
        rec = session_pb2.SessionRecord()
        rec.ParseFromString(entry.value or b"")
        return rec

    # --- end of calls --------------------------------------------------------------------------
    async def _on_lifecycle(self, event: call_pb2.CallEvent, _: Delivery) -> None:
        if event.WhichOneof("event") != "ended":
            return
        call_id = event.ended.meta.call_id
        owned = self.sessions.pop(call_id, None)
        if owned is None:
            return
        self._gauge.set(len(self.sessions))
        await self._close_session(call_id, owned.session, CALL_ENDED)
        try:
            await self._kv.delete(subjects.check_id(call_id), last=owned.revision)
        except (KeyWrongLastSequenceError, KeyNotFoundError, KeyDeletedError):
            pass

    async def _close_session(self, call_id: str, session: Session, reason: str) -> None:
        token = call_id_var.set(call_id)
        try:
            await asyncio.wait_for(session.close(reason), 5.0)
        except Exception as exc:
            log.warning("session close failed", exc_info=exc, extra={"stage": self.stage})
        finally:
            call_id_var.reset(token)

    async def _release(self, call_id: str) -> None:
        """Hand a session over: mark the record ownerless so a live replica takes it at once."""
        owned = self.sessions.pop(call_id, None)
        if owned is None:
            return
        self._gauge.set(len(self.sessions))
        await self._close_session(call_id, owned.session, "released")
        record = session_pb2.SessionRecord()
        record.CopyFrom(owned.record)
        record.replica_id = ""
        try:
            await self._kv.update(subjects.check_id(call_id), record.SerializeToString(), last=owned.revision)
        except Exception:
            pass
        log.info("session released", extra={"stage": self.stage, "call_id": call_id})

    # --- heartbeats and takeover ------------------------------------------------------------------
    async def _publish_heartbeat(self) -> None:
        hb = session_pb2.Heartbeat(
            stage=self.stage,
            replica_id=self.replica_id,
            ts_unix_ns=time.time_ns(),
            call_ids=list(self.sessions),
            draining=self.draining,
            capacity=max(0, self.max_sessions - len(self.sessions)),
        )
        await self.bus.publish(subjects.session_heartbeat(self.stage), hb, lane=Lane.CONTROL)

    async def _heartbeat_loop(self) -> None:
        while True:
            try:
                await self._publish_heartbeat()
            except PhoneAgentError:
                pass  # reconnecting; the next beat goes out when the bus is back
            await asyncio.sleep(self.heartbeat_s)

    async def _on_heartbeat(self, hb: session_pb2.Heartbeat, _: Delivery) -> None:
        if hb.replica_id != self.replica_id:
            self._peers[hb.replica_id] = (time.monotonic(), frozenset(hb.call_ids), hb.draining)

    def live_replicas(self) -> set[str]:
        now = time.monotonic()
        return {r for r, (seen, _, _) in self._peers.items() if now - seen < self.dead_after_s} | {
            self.replica_id
        }

    async def _monitor_loop(self) -> None:
        tick = 0
        while True:
            await asyncio.sleep(self.heartbeat_s)
            tick += 1
            if time.monotonic() - self._started_at < self.dead_after_s:
                continue  # too early to judge peers we may not have heard yet
            try:
                if not self.draining and self.adopting:
                    await self._adopt_orphans()
                if tick % 4 == 0:
                    await self._check_own()
            except PhoneAgentError:
                pass
            except Exception as exc:
                log.warning("session monitor error", exc_info=exc, extra={"stage": self.stage})

    @property
    def adopting(self) -> bool:
        """False while the bus is down and for ``adopt_grace_s`` after it reconnected."""
        if not self.bus.connected:
            return False
        return time.monotonic() - self.bus.connected_at >= self.adopt_grace_s

    async def _adopt_orphans(self) -> None:
        try:
            keys = await self._kv.keys()
        except NoKeysError:
            return
        live = self.live_replicas()
        covered: set[str] = set(self.sessions)
        for replica, (_, calls, _) in self._peers.items():
            if replica in live:
                covered |= calls
        for call_id in keys:
            if call_id in covered or len(self.sessions) >= self.max_sessions:
                continue
            await self._try_takeover(call_id, live)

    async def _try_takeover(self, call_id: str, live: set[str]) -> None:
        key = call_id
        try:
            entry = await self._kv.get(key)
        except (KeyNotFoundError, KeyDeletedError):
            return
        record = session_pb2.SessionRecord()
        record.ParseFromString(entry.value or b"")
        if record.replica_id in live and record.replica_id:
            return
        if await self._call_has_ended(call_id):
            try:
                await self._kv.delete(key, last=entry.revision)
            except Exception:
                pass
            return
        await asyncio.sleep(random.uniform(0, self.heartbeat_s / 4))  # spread the race
        previous = record.replica_id
        record.replica_id = self.replica_id
        record.takeovers += 1
        async with self._lock:
            try:
                revision = await self._kv.update(key, record.SerializeToString(), last=entry.revision)
            except KeyWrongLastSequenceError:
                return  # another replica won
            ok = await self._start_session(call_id, record.claim, revision, record, taken_over=True)
        if ok:
            metrics.SESSION_TAKEOVERS.labels(stage=self.stage).inc()
            log.info(
                "session taken over",
                extra={"stage": self.stage, "call_id": call_id, "previous_replica": previous or "(released)"},
            )

    async def _call_has_ended(self, call_id: str) -> bool:
        try:
            msg = await self.bus.jetstream().get_last_msg(subjects.CALLS_STREAM, subjects.lifecycle(call_id))
        except Exception:
            return False
        event = call_pb2.CallEvent()
        try:
            event.ParseFromString(msg.data or b"")
        except Exception:
            return False
        return bool(event.WhichOneof("event") == "ended")

    async def _check_own(self) -> None:
        """Close sessions this replica no longer owns (e.g. after a long pause it was declared dead)."""
        for call_id, owned in list(self.sessions.items()):
            owner = await self._owner(subjects.check_id(call_id))
            if owner is None or owner.replica_id != self.replica_id:
                self.sessions.pop(call_id, None)
                self._gauge.set(len(self.sessions))
                await self._close_session(call_id, owned.session, "ownership lost")
                log.warning("session ownership lost", extra={"stage": self.stage, "call_id": call_id})


async def claim_session(
    bus: Bus,
    stage: str,
    call: call_pb2.CallStarted,
    *,
    timeout: float = 2.0,
    attempts: int = 6,
    within: float = CLAIM_WAIT_OUT_S,
) -> session_pb2.SessionAssigned:
    """Ask ``stage`` for a session for ``call``.

    A full replica (overloaded) gets ``attempts`` tries, so a call nobody can take is refused
    in about two seconds; an unavailable answer (the ownership store electing a leader, or no
    replica subscribed while they reconnect) is waited out for ``within`` seconds."""
    claim = session_pb2.SessionClaim(stage=stage, call=call)

    async def once() -> session_pb2.SessionAssigned:
        reply = await bus.request(
            subjects.session_claim(stage), claim, session_pb2.SessionAssigned, timeout=timeout
        )
        if reply.HasField("error"):
            raise PhoneAgentError(ErrorKind.from_wire(reply.error.kind), reply.error.message)
        return reply

    return await retry(
        once,
        what=f"claim {stage} session",
        attempts=attempts,
        wait_out=(ErrorKind.UNAVAILABLE,),
        within=within,
    )
