"""SIP over TLS and SRTP together, with both real peers: Debian's baresip (``mediaenc=srtp-mand``)
and pjsua2 (PJSIP, SRTP mandatory, SDES only over a secure signalling hop) call the edge's TLS
listener; the trunk for 127.0.0.1 requires SRTP, so a call that connects is encrypted. A tone
goes each way: the caller's 440 Hz reaches ASR's subject, the agent's 1 kHz is what the peer
decodes (baresip's sndfile dump, pjsua2's recorder). And pjsua2 offering only RTP/SAVP to a
trunk with SRTP off (127.0.0.2, plain UDP) gets 488."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from phoneagent.runtime import subjects
from phoneagent.v1 import call_pb2, media_pb2
from support import baresip
from support.common import wait_for
from support.edge import Edge, running_edge, tls_settings
from support.pjsua2 import (
    NEEDS_PJSUA2,
    PJSUA2_ENDPOINT,
    PJSUA2_FINISH,
    PJSUA2_HOLD,
    PJSUA2_PHONE,
    peer_result,
    start_peer,
)
from support.sip_phone import assert_tone, collect, joined_pcm, read_wav, speak, tone
from support.tls import CertFiles

pytestmark = [pytest.mark.slow]
NEEDS_BARESIP = pytest.mark.skipif(
    shutil.which("baresip") is None, reason="baresip is not installed (apt-get baresip)"
)
TRUNKS = [
    {"name": "secure", "sources": ["127.0.0.1/32"], "srtp": "required"},
    {"name": "plain", "sources": ["127.0.0.2/32"], "srtp": "off"},
]

# pjsua2 calling ``target`` over ``transport`` (tls or udp) from ``bound``, SRTP mandatory with
# ``secure`` as srtpSecureSignaling (1: keys only over TLS, 0: over any transport); it plays
# ``play`` into the call and records what it hears to ``record``, and hangs up after 4 s.
PHONE = (
    r"""
import json, sys, time
import pjsua2 as pj

target, transport, bound, secure, ca, play, record = sys.argv[1:8]
result = {"states": [], "status": 0}
"""
    + PJSUA2_ENDPOINT
    + r"""tcfg = pj.TransportConfig()
tcfg.boundAddress = bound
if transport == "tls":
    tcfg.tlsConfig.CaListFile = ca
    tcfg.tlsConfig.method = pj.PJSIP_TLSV1_2_METHOD
    tcfg.tlsConfig.verifyServer = True
    ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, tcfg)
else:
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
"""
    + PJSUA2_PHONE
    + PJSUA2_HOLD
    + r"""
acc, call = dial(target, bound, pj.PJMEDIA_SRTP_MANDATORY, int(secure))
hold_then_hang_up(call, 4.0)
del media[:]
del call
"""
    + PJSUA2_FINISH
)


@pytest.fixture(scope="module")
async def edge(nats_url: str, certs: CertFiles) -> AsyncIterator[Edge]:
    settings = tls_settings(
        certs,
        inbound_trunks=json.dumps(TRUNKS),
        rtp_port_min=46000,
        rtp_port_max=46999,
        max_call_duration_s=30.0,
        rtp_latch=True,  # baresip's RTP leaves from 127.0.0.1 whatever address its SDP names
    )
    async with running_edge(nats_url, settings, tag="tlssrtp") as edge:
        yield edge


async def secure_call(edge: Edge, before: int) -> tuple[str, list[media_pb2.AudioFrame]]:
    """Wait for the call on the TLS listener, check its media is SRTP, collect what reaches ASR
    and speak two seconds of 1 kHz as the agent; the caller hangs up."""
    started = await wait_for(lambda: edge.lifecycle("started")[before:], timeout=10)
    call_id = started[0].meta.call_id
    audio = await collect(edge.bus, subjects.audio_in(call_id), media_pb2.AudioFrame)
    await wait_for(lambda: edge.lifecycle("answered", call_id), timeout=10)
    assert edge.svc.calls[call_id].rtp.encrypted
    assert edge.svc.ua is not None
    assert edge.svc.ua.transports["TLS"].inbound_connections == 1  # the call's signalling
    await speak(edge.bus, call_id, 100, rate=started[0].playout_rate)
    ended = await wait_for(lambda: edge.lifecycle("ended", call_id), timeout=15)
    assert ended[0].reason == call_pb2.END_REASON_CALLER_HANGUP
    return call_id, audio


def assert_caller_heard(audio: list[media_pb2.AudioFrame]) -> None:
    assert_tone(joined_pcm(audio), 16000, 440)


@NEEDS_BARESIP
async def test_baresip_tls_and_srtp_carries_audio_both_ways(
    edge: Edge, certs: CertFiles, tmp_path: Path
) -> None:
    wav = baresip.write_wav(tmp_path / "in.wav", tone(440, 8000 * 20))
    conf = baresip.write_config(
        tmp_path / "conf",
        wav,
        extra=(f"sip_cafile {certs.ca}", f"snd_path {tmp_path}"),  # sndfile dumps what it decodes
        rtp_ports="47000-47998",
        modules=("g711", "srtp", "sndfile"),
        account="audio_codecs=PCMU;mediaenc=srtp-mand",
    )
    before = len(edge.lifecycle("started"))
    proc = await baresip.dial(conf, f"sip:+14155550134@127.0.0.1:{edge.tls_port};transport=tls", seconds=7)
    try:
        call_id, audio = await secure_call(edge, before)
        assert edge.lifecycle("started", call_id)[0].codec == "PCMU"
    finally:
        out = await baresip.finish(proc)
        print(out[-3000:])
    assert "srtp" in out.lower()
    assert_caller_heard(audio)
    assert_tone(*baresip.decoded(tmp_path), 1000)


@NEEDS_PJSUA2
async def test_pjsua2_tls_and_srtp_carries_audio_both_ways(
    edge: Edge, certs: CertFiles, tmp_path: Path
) -> None:
    baresip.write_wav(tmp_path / "in.wav", tone(440, 8000 * 10))
    before = len(edge.lifecycle("started"))
    proc = await start_peer(
        PHONE,
        f"sip:+14155550134@127.0.0.1:{edge.tls_port};transport=tls",
        "tls",
        "127.0.0.1",
        "1",  # SRTP keys only over TLS: pjsua2 refuses SDES on an insecure hop
        str(certs.ca),
        str(tmp_path / "in.wav"),
        str(tmp_path / "out.wav"),
    )
    call_id, audio = await secure_call(edge, before)
    result = await peer_result(proc, 30, "pjsua2 tls+srtp phone")
    assert "CONFIRMED" in result["states"], result
    assert_caller_heard(audio)
    assert_tone(*read_wav(tmp_path / "out.wav"), 1000)


@NEEDS_PJSUA2
async def test_pjsua2_offering_only_savp_to_a_trunk_without_srtp_gets_488(edge: Edge, tmp_path: Path) -> None:
    baresip.write_wav(tmp_path / "in.wav", tone(440, 8000 * 5))
    before = len(edge.lifecycle("started"))
    proc = await start_peer(
        PHONE,
        f"sip:+14155550134@127.0.0.1:{edge.port}",
        "udp",
        "127.0.0.2",  # the "plain" trunk: SRTP off
        "0",
        "",
        str(tmp_path / "in.wav"),
        str(tmp_path / "out.wav"),
    )
    result = await peer_result(proc, 30, "pjsua2 savp phone")
    assert result["status"] == 488 and "CONFIRMED" not in result["states"], result
    assert not edge.lifecycle("started")[before:]
