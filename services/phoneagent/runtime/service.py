"""The shared shape of a service process: settings, logging, tracing, bus, health, sessions,
signal handling and graceful drain.

A service subclasses :class:`Service`, sets ``name`` (and ``stage`` when it holds per-call
sessions), and implements :meth:`setup` (load engines, subscribe) and, for a stage,
:meth:`new_session`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from phoneagent.runtime import bus_auth, logs, metrics, streams, telemetry
from phoneagent.runtime.bus import Bus
from phoneagent.runtime.health import HealthServer
from phoneagent.runtime.sessions import Session, SessionHost
from phoneagent.runtime.settings import CommonSettings
from phoneagent.runtime.tasks import TaskOwner
from phoneagent.v1 import session_pb2

log = logging.getLogger(__name__)


class Service:
    name = "service"
    stage: str | None = None  # set for stages that claim per-call sessions

    def __init__(self, common: CommonSettings) -> None:
        self.common = common
        self.replica = f"{self.name}-{common.replica}" if not common.replica_id else common.replica_id
        self.bus = Bus(f"{self.name}/{self.replica}")
        self.tasks = TaskOwner(self.name)
        self.sessions: SessionHost | None = None
        self.health: HealthServer | None = None
        self._stopping = asyncio.Event()
        self._engine_ready = False
        self._ready_gauge = metrics.SERVICE_READY.labels(service=self.name)
        self._checks: dict[str, Callable[[], bool]] = {}
        self.started_at = time.monotonic()

    # --- to implement -----------------------------------------------------------------------------
    async def setup(self) -> None:
        """Load engines and subscribe to subjects. Called once the bus is connected."""

    async def serve_requests(self) -> None:
        """Start answering requests that belong to no call (after setup, before sessions)."""

    async def new_session(self, claim: session_pb2.SessionClaim, taken_over: bool) -> Session:
        raise TypeError(f"{self.name} holds no sessions")

    async def teardown(self) -> None:
        """Release engines. Called after the bus is drained."""

    def status(self) -> dict[str, object]:
        return {}

    # --- shared -------------------------------------------------------------------------------------
    def add_health_check(self, name: str, check: Callable[[], bool]) -> None:
        """A part the service needs (e.g. a background consumer): /readyz is false while it fails."""
        self._checks[name] = check

    def failing_checks(self) -> list[str]:
        failing = []
        for name, check in self._checks.items():
            try:
                ok = check()
            except Exception:
                ok = False
            if not ok:
                failing.append(name)
        return failing

    @property
    def ready(self) -> bool:
        return (
            self._engine_ready
            and self.bus.connected
            and not self._stopping.is_set()
            and not self.failing_checks()
        )

    def _status(self) -> dict[str, object]:
        out: dict[str, object] = {
            "service": self.name,
            "replica": self.replica,
            "bus": self.bus.connected,
            "engine": self._engine_ready,
        }
        if self._checks:
            out["failing"] = self.failing_checks()
        if self.sessions is not None:
            out["sessions"] = len(self.sessions.sessions)
            out["draining"] = self.sessions.draining
        out.update(self.status())
        return out

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        self.health = HealthServer(
            self.common.http_host,
            self.common.http_port,
            live=lambda: True,
            ready=lambda: self.ready,
            status=self._status,
        )
        port = await self.health.start()
        log.info("service starting", extra={"http_port": port})
        try:
            # settings built in code (not from the environment) name no user: the environment's
            auth = self.common.bus_auth if self.common.nats_user else bus_auth.BusAuth.from_env()
            if not await self._unless_stopped(
                self.bus.connect(
                    self.common.nats_url, connect_deadline=self.common.nats_connect_deadline_s, auth=auth
                )
            ):
                return
            if auth.user in ("", bus_auth.OPERATOR, bus_auth.PROVISIONER):
                await streams.ensure(
                    self.bus.jetstream(),
                    call_state_ttl_s=self.common.call_state_ttl_s,
                    replicas=self.common.nats_stream_replicas,
                )
            elif not await self._unless_stopped(
                streams.wait_provisioned(self.bus.jetstream(), self.common.nats_connect_deadline_s)
            ):
                return
            await self.setup()
            await self.serve_requests()
            if self.stage is not None:
                self.sessions = SessionHost(
                    self.bus,
                    self.stage,
                    self.replica,
                    self.new_session,
                    heartbeat_s=self.common.heartbeat_s,
                    dead_after_s=self.common.dead_after_s,
                    max_sessions=self.common.max_sessions,
                    adopt_grace_s=self.common.adopt_grace_s,
                )
                await self.sessions.start()
            self._engine_ready = True
            self._ready_gauge.set(1)
            if self.common.status_file:
                _write_atomic(Path(self.common.status_file), f"{port}\n")
            log.info(
                "service ready",
                extra={"http_port": port, "startup_s": round(time.monotonic() - self.started_at, 2)},
            )
            await self._stopping.wait()
            log.info("service draining", extra={"timeout_s": self.common.drain_timeout_s})
        finally:
            self._ready_gauge.set(0)
            await self._shutdown()

    async def _unless_stopped(self, aw: Any) -> bool:
        """Await ``aw`` unless SIGTERM comes first (then cancel it and return False)."""
        job = asyncio.ensure_future(aw)
        stop = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({job, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not job.done():
            job.cancel()
            await asyncio.gather(job, return_exceptions=True)
            return False
        job.result()
        return True

    async def _shutdown(self) -> None:
        if self.sessions is not None:
            try:
                await self.sessions.drain(self.common.drain_timeout_s)
            except Exception as exc:
                log.warning("drain failed", exc_info=exc)
            await self.sessions.close()
        await self.tasks.close(timeout=5.0)
        await self.bus.drain(timeout=3.0)
        try:
            await self.teardown()
        except Exception as exc:
            log.warning("teardown failed", exc_info=exc)
        if self.health is not None:
            await self.health.close()
        telemetry.shutdown()
        log.info("service stopped")

    def stop(self) -> None:
        self._stopping.set()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(service_cls: type[Service], settings_cls: Any = None) -> int:
    """Entry point shared by every ``phone-agent serve <service>``."""
    from phoneagent.runtime.settings import SettingsError, load

    try:
        common = load(CommonSettings)
        extra = load(settings_cls) if settings_cls is not None else None
    except SettingsError as exc:
        print(f"phone-agent {service_cls.name}: {exc}", flush=True)
        return 2
    logs.setup(
        service_cls.name, common.replica, common.log_level, common.log_format.value, common.log_sensitive
    )
    telemetry.setup(service_cls.name, common.replica, common.otlp_endpoint)
    svc = service_cls(common, extra) if settings_cls is not None else service_cls(common)  # type: ignore[call-arg]
    try:
        asyncio.run(svc.run())
    except Exception as exc:
        log.error("service failed", exc_info=exc)
        return 1
    return 0
