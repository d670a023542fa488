"""A real EdgeService on the test session's nats-server, with session hosts standing in for
the other stages (their sessions come from ``factory``) and an observer bus that collects the
calls' lifecycle events. Shared by the edge's call tests."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from phoneagent.edge.service import EdgeService
from phoneagent.edge.settings import EdgeSettings
from phoneagent.runtime import streams, subjects
from phoneagent.runtime.bus import Bus, Delivery, Lane
from phoneagent.runtime.sessions import SessionHost
from phoneagent.runtime.settings import CommonSettings, load
from phoneagent.v1 import call_pb2, session_pb2

from support.common import PUBLIC_KEY_FILE, quiet_session
from support.tls import CertFiles

SessionFactory = Callable[[session_pb2.SessionClaim, bool], Awaitable[Any]]
# Sessions of calls to "slow" wait for GATE in gated_session: the edge keeps such a call ringing.
GATE = asyncio.Event()


class TrivialSession:
    def __init__(self, claim: session_pb2.SessionClaim) -> None:
        self.claim = claim

    async def start(self) -> None:
        if "slow" in self.claim.call.to_uri:
            await asyncio.wait_for(GATE.wait(), 10)

    async def close(self, reason: str) -> None:
        return None


async def gated_session(claim: session_pb2.SessionClaim, taken_over: bool) -> TrivialSession:
    return TrivialSession(claim)


@dataclass
class Edge:
    svc: EdgeService
    port: int
    bus: Bus
    directory: Path | None = None  # the recording directory, when the test set one
    events: list[call_pb2.CallEvent] = field(default_factory=list)

    def lifecycle(self, kind: str, call_id: str | None = None) -> list[Any]:
        return [
            getattr(e, kind)
            for e in self.events
            if e.WhichOneof("event") == kind and (call_id is None or getattr(e, kind).meta.call_id == call_id)
        ]

    def ended(self, call_id: str) -> list[call_pb2.CallEnded]:
        return self.lifecycle("ended", call_id)

    @property
    def tls_port(self) -> int:
        """The port of the edge's SIP/TLS listener."""
        assert self.svc.ua is not None
        return self.svc.ua.local_address("TLS")[1]


def tls_settings(certs: CertFiles, **settings: Any) -> EdgeSettings:
    """Edge settings for SIP over UDP, TCP and TLS (free ports; ``certs``' server certificate)
    and no web listener; ``settings`` add to these."""
    return load(
        EdgeSettings,
        sip_port=0,
        sip_transports=["udp", "tcp", "tls"],
        tls_port=0,
        tls_cert_file=str(certs.cert),
        tls_key_file=str(certs.key),
        web_enabled=False,
        **settings,
    )


@asynccontextmanager
async def running_edge(
    nats_url: str,
    settings: EdgeSettings,
    *,
    tag: str,
    factory: SessionFactory = quiet_session,
    directory: Path | None = None,
    stages: tuple[str, ...] = subjects.STAGES,
) -> AsyncIterator[Edge]:
    """The edge with ``settings``, ready for calls; drained and torn down afterwards. ``tag``
    keeps the stand-in replicas' names apart between test modules; ``stages`` are the stages
    stood in for (leave out one the test runs for real). Unless ``settings`` name policy's public
    keys, the edge trusts the tests' key (support.common.SIGNER)."""
    if not settings.approval_public_key_files:
        settings = dataclasses.replace(settings, approval_public_key_files=[PUBLIC_KEY_FILE])
    stage_bus, bus = Bus(f"{tag}-stages"), Bus(f"{tag}-observer")
    await stage_bus.connect(nats_url)
    await bus.connect(nats_url)
    await streams.ensure(stage_bus.jetstream())
    hosts = [SessionHost(stage_bus, st, f"{st}-{tag}", factory) for st in stages]
    for h in hosts:
        await h.start()
    svc = EdgeService(load(CommonSettings, nats_url=nats_url, drain_timeout_s=1.0), settings)
    await svc.bus.connect(nats_url)
    await svc.setup()
    assert svc.ua is not None
    edge = Edge(svc, svc.ua.local_address()[1], bus, directory)

    async def on_life(ev: call_pb2.CallEvent, _: Delivery) -> None:
        edge.events.append(ev)

    await bus.subscribe(subjects.ALL_LIFECYCLE, call_pb2.CallEvent, on_life, lane=Lane.CONTROL)
    try:
        yield edge
    finally:
        await svc.drain_calls(1.0)
        await svc.bus.drain(timeout=2.0)
        await svc.teardown()
        for h in hosts:
            await h.close()
        await stage_bus.close()
        await bus.close()


class SilentLine:
    """A call's line (the edge's CallTransport) on which the caller never speaks and nothing the
    agent sends goes anywhere: for driving an EdgeCall without SIP or WebRTC."""

    name = "silent"
    sample_rate = 8000

    def pull_caller_frame(self) -> np.ndarray | None:
        return None

    async def send_agent_frame(self, pcm: np.ndarray, speech: bool) -> None: ...

    async def send_dtmf(self, digit: str) -> None: ...

    async def hangup(self, reason: str) -> None: ...

    async def transfer(self, target: str, warm: bool, summary: str) -> tuple[bool, str]:
        return False, "no transfer on a silent line"
