"""The edge's shared call fixture: a running edge (real SIP/RTP on 127.0.0.1) whose stand-in
stages claim every call at once, except calls to "slow", which ring until ``GATE`` is set. A
test module with its own ``edge`` fixture (other settings) overrides it. ``certs``: a CA and a
server certificate for 127.0.0.1 made for the module's TLS tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from phoneagent.edge.settings import EdgeSettings
from phoneagent.runtime.settings import load
from support.edge import Edge, gated_session, running_edge
from support.tls import CertFiles, make_certs


@pytest.fixture(scope="module")
async def edge(nats_url: str) -> AsyncIterator[Edge]:
    settings = load(
        EdgeSettings,
        sip_port=0,
        rtp_port_min=41000,
        rtp_port_max=41999,
        max_call_duration_s=30.0,
        backchannel_wait_ms=700,
    )
    async with running_edge(nats_url, settings, tag="t", factory=gated_session) as edge:
        yield edge


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return make_certs(tmp_path_factory.mktemp("certs"))
