"""A campaign end to end against real third-party SIP stacks: ``phone-agent campaign start`` (its
own process) asks the real policy service about each number and has the real edge service dial it
through a trunk on 127.0.0.1 that is

* PJSIP (pjsua2, in a child process: it aborts its process if its objects outlive
  ``libDestroy()``): it answers one number like a person ("Hello?", then listens, then hangs up),
  rejects one busy (486), lets one ring past the edge's no-answer timeout; or
* Debian's baresip: it auto-answers its one line, the agent speaks and then hangs up.

Each campaign also holds a number on the DNC list: denied by policy with its reason, never dialled.
The results CSV, what the peer saw and heard, and the audit decisions are checked.
"""

from __future__ import annotations

import asyncio
import csv
import shutil
import sys
import wave
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from phoneagent.devtools.harness.demo import free_udp_port  # free for UDP and TCP: SIP listens on both
from phoneagent.edge.service import EdgeService
from phoneagent.edge.settings import EdgeSettings
from phoneagent.policy.service import PolicyService
from phoneagent.policy.stores import PolicyStores
from phoneagent.runtime import subjects
from phoneagent.runtime.audit_query import AuditFilter, query_audit
from phoneagent.runtime.bus import Bus, Delivery, Lane
from phoneagent.runtime.numbers import masked_party
from phoneagent.runtime.settings import load
from phoneagent.v1 import call_pb2, common_pb2, control_pb2, media_pb2, policy_pb2
from support import baresip
from support.common import wait_for
from support.edge import running_edge
from support.pjsua2 import (
    NEEDS_PJSUA2,
    PJSUA2_ENDPOINT,
    PJSUA2_HANGUP_ALL,
    PJSUA2_MEDIA,
    peer_port,
    peer_result,
    start_peer,
)
from support.policy_stack import running_policy

pytestmark = pytest.mark.slow
NO_BARESIP = pytest.mark.skipif(
    shutil.which("baresip") is None, reason="baresip is not installed (apt-get install baresip)"
)
HOST = "127.0.0.1"
RATE = 8000
ANSWERS, BUSY, SILENT, ON_DNC = "+12125550111", "+12125550112", "+12125550113", "+12125550114"
ANSWERS_B, ON_DNC_B = "+12125550121", "+12125550124"  # the baresip campaign
CAMPAIGN = "camp-peers-t"

# The trunk: one pjsua2 endpoint that answers, rejects or lets ring by the dialled number (the
# user part of the INVITE's To). The answered call hears a WAV (a short "Hello?" then quiet), its
# recorder keeps what the agent says, and the peer hangs up ``hold_s`` after the call is confirmed.
TRUNK = (
    r"""
import json, re, select, sys, time
import pjsua2 as pj

answers, busy, hello, record, hold_s = sys.argv[1:6]
hold_s = float(hold_s)
result = {"invites": [], "states": {}}
"""
    + PJSUA2_ENDPOINT
    + r"""tcfg = pj.TransportConfig()
tcfg.boundAddress = "127.0.0.1"
tid = ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
ep.libStart()
ep.audDevManager().setNullDev()
calls, media, confirmed = [], [], {}
"""
    + PJSUA2_MEDIA
    + r"""

class Call(pj.Call):
    def __init__(self, acc, call_id, number):
        super().__init__(acc, call_id)
        self.number = number
        self.states = result["states"].setdefault(number, [])

    def onCallState(self, prm):
        info = self.getInfo()
        self.states.append(info.stateText)
        if info.stateText == "CONFIRMED":
            confirmed[self] = time.time()

    def onCallMediaState(self, prm):
        if self.number != answers or media:
            return
        start_media(self, hello, record, pj.PJMEDIA_FILE_NO_LOOP)


class Account(pj.Account):
    def onIncomingCall(self, prm):
        found = re.match(r"INVITE sip:([^@;>]+)@", prm.rdata.wholeMsg)
        number = found.group(1) if found else ""
        result["invites"].append(number)
        call = Call(self, prm.callId, number)
        calls.append(call)
        op = pj.CallOpParam()
        op.statusCode = 486 if number == busy else 180
        call.answer(op)
        if number == answers:
            op = pj.CallOpParam()
            op.statusCode = 200
            call.answer(op)


acfg = pj.AccountConfig()
acfg.idUri = "sip:trunk@127.0.0.1"
acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
acfg.mediaConfig.transportConfig.port = 48000
acfg.mediaConfig.transportConfig.portRange = 400
acc = Account()
acc.create(acfg)
print("PORT " + ep.transportGetInfo(tid).localName.rsplit(":", 1)[1], flush=True)
end = time.time() + 80
while time.time() < end:
    ep.libHandleEvents(10)
    for call, at in list(confirmed.items()):
        if time.time() - at > hold_s:
            del confirmed[call]
            call.hangup(pj.CallOpParam(True))
    if select.select([sys.stdin], [], [], 0)[0]:
        break
"""
    + PJSUA2_HANGUP_ALL
    + r"""for _ in range(20):
    ep.libHandleEvents(10)
del media[:]
del calls[:]
acc.shutdown()
del acc
ep.libDestroy()
del ep
print("RESULT " + json.dumps(result), flush=True)
"""
)


def _hello() -> npt.NDArray[np.int16]:
    """A person picking up: a little line noise, 0.6 s of voiced "Hello?", then quiet."""
    rng = np.random.default_rng(3)
    t = np.arange(int(0.6 * RATE)) / RATE
    phase = 2 * np.pi * np.cumsum(140.0 + 30.0 * np.sin(2 * np.pi * 1.3 * t)) / RATE
    voiced = 2500.0 * sum(np.sin(k * phase) / (1 + abs(k - 4)) for k in range(1, 20))
    parts = [rng.normal(0, 30, int(0.3 * RATE)), voiced, rng.normal(0, 30, int(8 * RATE))]
    return np.clip(np.concatenate(parts), -32768, 32767).astype(np.int16)


def _band_energy(pcm: npt.NDArray[np.int16], rate: int, freq: float) -> float:
    spec = np.abs(np.fft.rfft(pcm.astype(np.float64))) ** 2
    bins = np.fft.rfftfreq(len(pcm), 1 / rate)
    return float(spec[np.abs(bins - freq) < 50].sum() / (spec.sum() or 1.0))


def _read_wav(path: Path) -> tuple[npt.NDArray[np.int16], int]:
    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2"), w.getframerate()


def _frames(pcm: npt.NDArray[np.int16], rate: int) -> list[npt.NDArray[np.int16]]:
    n = rate // 50
    return [pcm[i : i + n] for i in range(0, len(pcm) - n + 1, n)]


@dataclass
class Stack:
    edge: EdgeService
    policy: PolicyService
    trunk: asyncio.subprocess.Process
    observer: Bus
    events: list[call_pb2.CallEvent]
    tmp: Path  # the peer's files


def _write_hello(tmp: Path) -> Path:
    hello = tmp / "hello.wav"
    with wave.open(str(hello), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(_hello().astype("<i2").tobytes())
    return hello


async def _start_pjsua2(tmp: Path) -> tuple[asyncio.subprocess.Process, int]:
    hello = _write_hello(tmp)
    proc = await start_peer(TRUNK, ANSWERS, BUSY, str(hello), str(tmp / "agent.wav"), "5.0", stdin=True)
    return proc, await peer_port(proc, 15, "pjsua2 trunk")


async def _stop_pjsua2(proc: asyncio.subprocess.Process) -> dict:
    """Ask the peer to finish (a line on its stdin), read its result; kill it if it hangs."""
    return await peer_result(proc, 15, "pjsua2 trunk", stdin=b"stop\n")


async def _start_baresip(tmp: Path) -> tuple[asyncio.subprocess.Process, int]:
    """Debian's baresip as the trunk: it auto-answers calls to ANSWERS_B, its microphone is the "Hello?"
    WAV and the ``sndfile`` module writes what it hears (the agent) to ``dump-*-dec.wav``."""
    port = free_udp_port()
    conf = baresip.write_config(
        tmp / "baresip",
        _write_hello(tmp),
        extra=(f"snd_path {tmp}",),
        rtp_ports="48500-48899",
        modules=("g711", "sndfile"),
        # baresip answers only its own user (404 otherwise): the line is the number the campaign calls.
        account="audio_codecs=PCMU;answermode=auto",
        user=ANSWERS_B,
        sip_port=port,
    )
    proc, _ = await baresip.answer(conf, 40)
    return proc, port


async def _stop_baresip(proc: asyncio.subprocess.Process) -> str:
    if proc.returncode is None:
        proc.terminate()
    try:
        out = (await asyncio.wait_for(proc.communicate(), 10))[0]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return out.decode(errors="replace")


@pytest.fixture
async def stack(
    request: pytest.FixtureRequest, nats_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("campaign_peers")
    db = tmp / "policy.sqlite3"
    now = datetime.now(UTC)
    with PolicyStores(db) as stores:
        for number in (ANSWERS, BUSY, SILENT, ON_DNC, ANSWERS_B, ON_DNC_B):
            stores.consent.grant(
                number, "reminder", "signup form", now - timedelta(days=1), now + timedelta(days=30)
            )
        stores.dnc.add(ON_DNC, "opt-out during call", now)
        stores.dnc.add(ON_DNC_B, "opt-out during call", now)

    async with AsyncExitStack() as cleanup:  # whatever was started is stopped, even on a failed setup
        start = {"pjsua2": _start_pjsua2, "baresip": _start_baresip}[request.param]
        trunk, trunk_port = await start(tmp)

        async def kill_trunk() -> None:
            if trunk.returncode is None:  # the test did not get to stop it
                trunk.kill()
                await trunk.wait()

        cleanup.push_async_callback(kill_trunk)
        common = {"replica_id": "policy-peers-t", "drain_timeout_s": 1.0}
        policy = await cleanup.enter_async_context(running_policy(nats_url, db, common=common))

        edge_settings = load(
            EdgeSettings,
            sip_port=0,
            rtp_port_min=47000,
            rtp_port_max=47499,
            web_enabled=False,
            trunk_uri=f"sip:{HOST}:{trunk_port}",
            no_answer_timeout_s=2.0,
        )
        edge = await cleanup.enter_async_context(
            running_edge(nats_url, edge_settings, tag="peers-t", stages=("asr", "llm", "tts"))
        )
        yield Stack(edge.svc, policy, trunk, edge.bus, edge.events, tmp)


def _call_id(events: list[call_pb2.CallEvent], number: str) -> str:
    """The call to ``number``: lifecycle events carry the parties masked (the last two digits)."""
    for ev in events:
        if ev.WhichOneof("event") == "started" and ev.started.to_uri == masked_party(number):
            return str(ev.started.meta.call_id)
    return ""


def _answered(events: list[call_pb2.CallEvent], call_id: str) -> bool:
    return any(ev.WhichOneof("event") == "answered" and ev.answered.meta.call_id == call_id for ev in events)


async def _agent_talks(stack: Stack, number: str) -> tuple[str, list[media_pb2.AudioFrame]]:
    """Once the answered number's call is up, collect what the edge hears and say 2 s of 1 kHz."""
    call_id = await wait_for(lambda: _call_id(stack.events, number), timeout=30)
    heard: list[media_pb2.AudioFrame] = []

    async def on_audio(frame: media_pb2.AudioFrame, _: Delivery) -> None:
        heard.append(frame)

    await stack.observer.subscribe(
        subjects.audio_in(call_id), media_pb2.AudioFrame, on_audio, max_pending=5000
    )
    await wait_for(lambda: _answered(stack.events, call_id), timeout=10)
    # The call's playout rate (an outbound call announces 16 kHz when G.722 leads PA_CODECS).
    rate = next(
        ev.started.playout_rate
        for ev in stack.events
        if ev.WhichOneof("event") == "started" and ev.started.meta.call_id == call_id
    )
    n = rate // 50
    t = np.arange(n * 100) / rate
    pcm = (8000 * np.sin(2 * np.pi * 1000 * t)).astype("<i2")
    for i in range(100):  # the edge holds this until AMD hears a person, then plays it
        chunk = media_pb2.SpeechChunk(
            meta=common_pb2.EventMeta(call_id=call_id, generation_id=1),
            sequence=i,
            pcm=pcm[i * n : (i + 1) * n].tobytes(),
            sample_rate=rate,
            last_in_generation=i == 99,
        )
        await stack.observer.publish(subjects.speech(call_id), chunk)
    return call_id, heard


async def _run_campaign(
    contacts: Path, results: Path, campaign: str, nats_url: str, env: dict[str, str], *pacing: str
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "phoneagent.cli",
        "campaign",
        "start",
        str(contacts),
        "--purpose",
        "reminder",
        "--campaign-id",
        campaign,
        *(pacing or ("--max-attempts", "1")),
        "--call-timeout-s",
        "20",
        "--out",
        str(results),
        "--nats-url",
        nats_url,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def _assert_agent_heard(path: Path) -> None:
    """The peer's recording holds the agent's 1 kHz reply, and only after the peer's "Hello?"
    (0.3-0.9 s) and its pause: the edge held the reply until AMD heard a person."""
    rec, rate = _read_wav(path)
    frames = _frames(rec, rate)
    loud = [i for i, f in enumerate(frames) if np.abs(f).max() > 1000]
    assert len(loud) >= 50, len(loud)
    assert loud[0] * 0.02 > 1.2, loud[0] * 0.02  # the callee spoke first
    assert _band_energy(np.concatenate([frames[i] for i in loud[5:55]]), rate, 1000) > 0.8


@NEEDS_PJSUA2
@pytest.mark.parametrize("stack", ["pjsua2"], indirect=True)
async def test_campaign_against_pjsua2_peer(
    stack: Stack, bus: Bus, nats_url: str, service_env: dict[str, str], tmp_path: Path
) -> None:
    contacts = tmp_path / "contacts.csv"
    contacts.write_text(
        "number,name,time_zone,account\n"
        f"{ANSWERS},Ann,America/New_York,A-1\n"
        f"{BUSY},Bob,America/New_York,B-2\n"
        f"{SILENT},Sid,America/New_York,S-3\n"
        f"{ON_DNC},Cy,America/New_York,C-4\n"
    )
    results = tmp_path / "results.csv"
    talker = asyncio.create_task(_agent_talks(stack, ANSWERS))
    pacing = ["--max-concurrent", "3", "--per-minute", "60", "--max-attempts", "2", "--retry-after-s", "0.3"]
    proc = await _run_campaign(contacts, results, CAMPAIGN, nats_url, service_env, *pacing)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 45)
        _, heard = await asyncio.wait_for(talker, 5)
    finally:
        talker.cancel()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    peer = await _stop_pjsua2(stack.trunk)
    assert proc.returncode == 0, err.decode()[-2000:]

    rows = {r["number"]: r for r in csv.DictReader(results.open())}
    assert set(rows) == {ANSWERS, BUSY, SILENT, ON_DNC}
    assert rows[ANSWERS]["status"] == "completed" and rows[ANSWERS]["attempts"] == "1", rows[ANSWERS]
    assert rows[BUSY]["status"] == "busy" and rows[BUSY]["attempts"] == "2", rows[BUSY]
    assert rows[BUSY]["reason"] == "sip 486"
    assert rows[SILENT]["status"] == "no_answer" and rows[SILENT]["attempts"] == "2", rows[SILENT]
    assert rows[ON_DNC]["status"] == "denied" and rows[ON_DNC]["attempts"] == "0", rows[ON_DNC]
    assert rows[ON_DNC]["reason"].startswith("internal_dnc:")

    # What the real peer saw: the DNC number never; busy and silent twice each (retried).
    assert sorted(peer["invites"]) == sorted([ANSWERS, BUSY, BUSY, SILENT, SILENT])
    assert "CONFIRMED" in peer["states"][ANSWERS]
    assert "CONFIRMED" not in peer["states"][SILENT]
    dialled = {ev.started.to_uri for ev in stack.events if ev.WhichOneof("event") == "started"}
    assert dialled == {masked_party(n) for n in (ANSWERS, BUSY, SILENT)}

    # Audio went both ways on the answered call: the peer's "Hello?" reached the edge's ASR feed,
    # and the peer's recorder got the agent's 1 kHz speech (played once AMD heard a person).
    voiced = [p for f in heard if np.abs(p := np.frombuffer(f.pcm, "<i2")).max() > 1000]
    assert len(voiced) >= 10, len(voiced)
    _assert_agent_heard(stack.tmp / "agent.wav")

    decisions = await query_audit(bus.jetstream(), AuditFilter(campaign_id=CAMPAIGN, subject="dial"))
    verdicts = sorted((d.number_hint[-2:], d.decision) for d in decisions)
    assert verdicts == [
        ("11", policy_pb2.DECISION_ALLOW),
        ("12", policy_pb2.DECISION_ALLOW),
        ("12", policy_pb2.DECISION_ALLOW),
        ("13", policy_pb2.DECISION_ALLOW),
        ("13", policy_pb2.DECISION_ALLOW),
        ("14", policy_pb2.DECISION_DENY),
    ]
    denied = [d for d in decisions if d.decision == policy_pb2.DECISION_DENY]
    assert "dnc" in denied[0].rule, denied[0]
    assert ANSWERS not in err.decode()  # progress lines show masked numbers only


def _seconds(frames: list[media_pb2.AudioFrame]) -> float:
    return sum(len(f.pcm) // 2 / (f.sample_rate or 16000) for f in frames)


@NO_BARESIP
@pytest.mark.parametrize("stack", ["baresip"], indirect=True)
async def test_campaign_against_baresip_peer(
    stack: Stack, bus: Bus, nats_url: str, service_env: dict[str, str], tmp_path: Path
) -> None:
    """baresip auto-answers; the agent (this test) speaks once AMD heard "Hello?", then hangs up."""
    campaign = CAMPAIGN + "-b"
    contacts = tmp_path / "contacts.csv"
    contacts.write_text(
        f"number,name,time_zone\n{ANSWERS_B},Ann,America/New_York\n{ON_DNC_B},Cy,America/New_York\n"
    )
    results = tmp_path / "results.csv"
    talker = asyncio.create_task(_agent_talks(stack, ANSWERS_B))
    proc = await _run_campaign(contacts, results, campaign, nats_url, service_env)
    try:
        call_id, heard = await asyncio.wait_for(talker, 30)
        await wait_for(lambda: _seconds(heard) > 4.5, timeout=15)  # the 2 s reply has been played
        bye = control_pb2.ControlEvent(
            meta=common_pb2.EventMeta(call_id=call_id, producer="agent"),
            hangup=control_pb2.Hangup(reason=call_pb2.END_REASON_AGENT_HANGUP, detail="goodbye"),
        )
        await stack.observer.publish(subjects.control(call_id), bye, lane=Lane.CONTROL)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        talker.cancel()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    log = await _stop_baresip(stack.trunk)
    assert proc.returncode == 0, err.decode()[-2000:]

    rows = {r["number"]: r for r in csv.DictReader(results.open())}
    assert rows[ANSWERS_B]["status"] == "completed" and rows[ANSWERS_B]["attempts"] == "1", rows
    assert rows[ON_DNC_B]["status"] == "denied" and rows[ON_DNC_B]["attempts"] == "0", rows
    assert rows[ON_DNC_B]["reason"].startswith("internal_dnc:")
    assert log.count("Call established") == 1, log[-3000:]  # the DNC number never rang baresip
    assert ON_DNC_B not in log, log[-3000:]

    voiced = [p for f in heard if np.abs(p := np.frombuffer(f.pcm, "<i2")).max() > 1000]
    assert len(voiced) >= 10, len(voiced)  # baresip's "Hello?" reached the edge
    dumps = sorted(stack.tmp.glob("*dec*.wav"))
    assert dumps, (list(stack.tmp.iterdir()), log[-3000:])
    _assert_agent_heard(dumps[0])  # what baresip decoded

    decisions = await query_audit(bus.jetstream(), AuditFilter(campaign_id=campaign, subject="dial"))
    verdicts = sorted((d.number_hint[-2:], d.decision) for d in decisions)
    assert verdicts == [("21", policy_pb2.DECISION_ALLOW), ("24", policy_pb2.DECISION_DENY)]
