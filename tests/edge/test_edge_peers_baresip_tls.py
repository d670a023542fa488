"""Debian's baresip calls the edge over SIP/TLS (the edge's certificate made for the test): the
call is admitted on the TLS listener, answered, carries the caller's audio (plain RTP) and ends
when baresip hangs up. Debian's baresip 1.0 completes the handshake whatever CA it is given (it
does not check the server's certificate), so certificate checks are tested between our own user
agents (test_edge_sip_tls.py)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from phoneagent.runtime import subjects
from phoneagent.v1 import call_pb2, media_pb2
from support import baresip
from support.common import wait_for
from support.edge import Edge, running_edge, tls_settings
from support.sip_phone import assert_tone, collect, joined_pcm, tone
from support.tls import CertFiles

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip is not installed (apt-get baresip)"),
]


@pytest.fixture(scope="module")
async def edge(nats_url: str, certs: CertFiles) -> AsyncIterator[Edge]:
    settings = tls_settings(certs, rtp_port_min=45000, rtp_port_max=45999)
    async with running_edge(nats_url, settings, tag="tls") as edge:
        yield edge


async def test_baresip_calls_over_tls(edge: Edge, certs: CertFiles, tmp_path: Path) -> None:
    assert edge.svc.ua is not None
    tls = edge.svc.ua.transports["TLS"]
    tls_port = edge.tls_port
    assert edge.svc.status()["sip_tls"] == f"127.0.0.1:{tls_port}"
    wav = baresip.write_wav(tmp_path / "in.wav", tone(440, 8000 * 20))
    conf = baresip.write_config(tmp_path / "conf", wav, extra=(f"sip_cafile {certs.ca}",))
    before = len(edge.lifecycle("started"))
    proc = await baresip.dial(conf, f"sip:+14155550134@127.0.0.1:{tls_port};transport=tls", seconds=6)
    try:
        started = await wait_for(lambda: edge.lifecycle("started")[before:], timeout=10)
        call_id = started[0].meta.call_id
        audio = await collect(edge.bus, subjects.audio_in(call_id), media_pb2.AudioFrame)
        await wait_for(lambda: edge.lifecycle("answered", call_id), timeout=10)
        assert tls.inbound_connections == 1  # the call's signalling came over the TLS listener
        ended = await wait_for(lambda: edge.lifecycle("ended", call_id), timeout=15)
        assert ended[0].reason == call_pb2.END_REASON_CALLER_HANGUP  # baresip's BYE, over TLS
        assert_tone(joined_pcm(audio), 16000, 440, skip=10)
    finally:
        print((await baresip.finish(proc))[-3000:])
