"""The local stack end to end: nats-server and the policy, records, asr, llm, tts and edge services as
separate processes with the real CPU models; calls run through the edge's call flow in the
test process with a loopback transport standing in for RTP (SIP itself is covered by the
edge tests; the edge process is here for the subjects it serves, such as edge.dial).

A caller hears the greeting (which must start with the AI disclosure), asks a question,
hears an answer, and hangs up; then the stack stops and leaves no process behind.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest
from google.protobuf.message import Message
from phoneagent.edge.callflow import EdgeCall
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Delivery
from phoneagent.runtime.stack import Stack
from phoneagent.v1 import (
    call_pb2,
    common_pb2,
    control_pb2,
    media_pb2,
    policy_pb2,
    records_pb2,
    session_pb2,
    speech_pb2,
    tools_pb2,
)
from support.common import cpu_stack_env, wait_for
from support.voice import piper_speech

pytestmark = pytest.mark.slow
DISCLOSURE = "You are speaking with an AI assistant."
STACK_SERVICES = ("policy", "records", "asr", "llm", "tts", "edge")


class LoopbackTransport:
    """Plays a scripted caller into the call flow and records what the agent sends back."""

    name = "loopback"
    sample_rate = 8000

    def __init__(self) -> None:
        self.outgoing: list[np.ndarray] = []
        self.speech_frames = 0
        self.script: list[np.ndarray] = []
        self.hung_up = ""
        self.first_speech_after: dict[str, float] = {}
        self.marks: dict[str, float] = {}

    def say(self, pcm: np.ndarray, mark: str) -> None:
        frames = [pcm[i : i + 160] for i in range(0, len(pcm) - 159, 160)]
        frames += [np.zeros(160, np.int16)] * 40  # 800 ms of silence ends the utterance
        self.script.extend(frames)
        self.pending_mark = mark

    def pull_caller_frame(self) -> np.ndarray:
        if self.script:
            frame = self.script.pop(0)
            if not self.script and getattr(self, "pending_mark", None):
                self.marks[self.pending_mark] = time.monotonic()
                self.pending_mark = None
            return frame
        noise = np.random.default_rng().normal(0, 30, 160)
        return noise.astype(np.int16)

    async def send_agent_frame(self, pcm: np.ndarray, speech: bool) -> None:
        if speech:
            self.speech_frames += 1
            self.outgoing.append(pcm)
            for mark, at in self.marks.items():
                self.first_speech_after.setdefault(mark, time.monotonic() - at)

    async def send_dtmf(self, digit: str) -> None: ...

    async def hangup(self, reason: str) -> None:
        self.hung_up = reason

    async def transfer(self, target: str, warm: bool, summary: str) -> tuple[bool, str]:
        return False, "no transfer in this test"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data = tmp_path_factory.mktemp("stack")
    env = cpu_stack_env(data)
    env.update(PA_SIP_PORT="0", PA_WEB_PORT="0")  # the edge process: any free ports
    st = Stack(data, STACK_SERVICES, env=env)
    try:
        st.start(ready_timeout=240)
        yield st
    finally:
        pids = [c.proc.pid for c in st.children] + ([st.nats.proc.pid] if st.nats and st.nats.proc else [])
        st.stop()
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)


@pytest.fixture
async def edge_bus(stack: Stack) -> AsyncIterator[Bus]:
    assert stack.nats is not None
    bus = Bus("edge-e2e")
    await bus.connect(stack.nats.url)
    yield bus
    await bus.close()


async def test_a_call_through_the_stack(stack: Stack, edge_bus: Bus) -> None:
    call_id = subjects.new_call_id()
    said: list[speech_pb2.AgentText] = []
    finals: list[speech_pb2.Transcript] = []
    lifecycle: list[call_pb2.CallEvent] = []

    async def on_say(m: speech_pb2.AgentText, _: Delivery) -> None:
        said.append(m)

    async def on_final(m: speech_pb2.Transcript, _: Delivery) -> None:
        finals.append(m)

    async def on_life(m: call_pb2.CallEvent, _: Delivery) -> None:
        lifecycle.append(m)

    await edge_bus.subscribe(subjects.say(call_id), speech_pb2.AgentText, on_say)
    await edge_bus.subscribe(subjects.transcript(call_id), speech_pb2.Transcript, on_final)
    await edge_bus.subscribe(subjects.lifecycle(call_id), call_pb2.CallEvent, on_life)

    transport = LoopbackTransport()
    started = call_pb2.CallStarted(
        meta=common_pb2.EventMeta(call_id=call_id),
        direction=call_pb2.DIRECTION_INBOUND,
        transport=call_pb2.TRANSPORT_SIP,
        from_uri="sip:+14155550134@test",
        to_uri="sip:agent@test",
        sample_rate=16000,
        codec="PCMU",
        agent="dental_clinic",
    )
    call = EdgeCall(edge_bus, started, transport)
    await call.start()
    await call.answered()

    # The greeting is spoken, and policy made it start with the AI disclosure.
    await wait_for(lambda: said, timeout=20)
    assert said[0].text.startswith(DISCLOSURE), said[0].text
    await wait_for(lambda: transport.speech_frames > 50, timeout=30)
    await wait_for(lambda: call.playing is None and not call.queue, timeout=60)

    transport.say(piper_speech("What are your opening hours?", 8000), "question")
    await wait_for(lambda: finals, timeout=60)
    assert "open" in finals[0].text.lower(), finals[0].text
    replies = lambda: [m for m in said if m.meta.generation_id > said[0].meta.generation_id and m.text]  # noqa: E731
    await wait_for(replies, timeout=90)
    await wait_for(lambda: "question" in transport.first_speech_after, timeout=60)
    print(
        f"\nmouth-to-ear (end of question audio -> first agent frame): "
        f"{transport.first_speech_after['question'] * 1000:.0f} ms; reply: {replies()[0].text!r}"
    )

    await call.end(call_pb2.END_REASON_CALLER_HANGUP, "caller hung up")
    await wait_for(lambda: any(e.WhichOneof("event") == "ended" for e in lifecycle), timeout=5)
    # Every stage released the call: a fresh claim is not "existing".
    from phoneagent.runtime.sessions import claim_session

    await asyncio.sleep(0.5)
    again = await claim_session(edge_bus, "asr", started)
    assert not again.existing
    await edge_bus.publish(
        subjects.lifecycle(call_id),
        call_pb2.CallEvent(
            ended=call_pb2.CallEnded(
                meta=common_pb2.EventMeta(call_id=call_id), reason=call_pb2.END_REASON_CALLER_HANGUP
            )
        ),
    )


async def test_stack_status_reports_every_service_ready(stack: Stack) -> None:
    rows = stack.status()
    assert {r["service"] for r in rows} == set(STACK_SERVICES)
    assert all(r.get("ready") for r in rows), rows


def hostile(call_id: str) -> list[tuple[str, Message]]:
    """Valid protobuf that no well-behaved peer sends: unknown enum values, wrong sample rates,
    huge strings, missing ids. Every service must answer or drop these, never die."""
    huge = "x" * 200_000  # under the bus's 256 KiB limit: it reaches the handlers
    words = "hello " * 30_000
    meta = common_pb2.EventMeta(call_id=call_id)
    no_gen = common_pb2.EventMeta(call_id=call_id, turn_id=4_000_000_000, generation_id=4_000_000_000)
    pcm_odd = b"\x01" * 321  # an odd number of bytes is not 16-bit PCM
    return (
        [
            (subjects.lifecycle(call_id), call_pb2.CallEvent(answered=call_pb2.CallAnswered(meta=meta))),
            (
                subjects.lifecycle(call_id),
                call_pb2.CallEvent(
                    started=call_pb2.CallStarted(
                        meta=meta,
                        direction=999,  # type: ignore[arg-type]
                        transport=999,  # type: ignore[arg-type]
                        from_uri=huge,
                        sample_rate=3,
                        agent="a" * 1000,
                    )
                ),
            ),
            (subjects.audio_in(call_id), media_pb2.AudioFrame(meta=meta, pcm=pcm_odd, sample_rate=0)),
            (subjects.audio_in(call_id), media_pb2.AudioFrame(meta=meta, pcm=b"\x00" * 640, sample_rate=7)),
            (
                subjects.audio_in(call_id),
                media_pb2.AudioFrame(
                    meta=meta, pcm=b"\x00" * 200_000, sample_rate=4_000_000_000, sequence=2**63
                ),
            ),
            (
                subjects.asr_events(call_id),
                speech_pb2.AsrEvent(transcript=speech_pb2.Transcript(meta=no_gen)),
            ),
            (subjects.asr_events(call_id), speech_pb2.AsrEvent(error=common_pb2.Error(kind=999))),  # type: ignore[arg-type]
            (subjects.transcript(call_id), speech_pb2.Transcript(meta=no_gen, final=True, text=words)),
            (
                subjects.transcript(call_id),
                speech_pb2.Transcript(meta=meta, final=True, text="", confidence=-5),
            ),
            (subjects.reply(call_id), speech_pb2.AgentText(meta=no_gen, text=words, final=True)),
            (
                subjects.say(call_id),
                speech_pb2.AgentText(meta=no_gen, text=huge, final=True, voice="v" * 1000),
            ),
            (subjects.say(call_id), speech_pb2.AgentText(meta=meta, text="Hi.", voice="no-such-voice")),
            (subjects.speech(call_id), media_pb2.SpeechChunk(meta=no_gen, pcm=pcm_odd, sample_rate=0)),
            (
                subjects.speech(call_id),
                media_pb2.SpeechChunk(meta=no_gen, pcm=b"\x00" * 640, sample_rate=44_100, text_end=2**31),
            ),
            (subjects.tool(call_id), tools_pb2.ToolCall(meta=meta, name=huge, arguments_json="{not json")),
            (subjects.recording(call_id), media_pb2.RecordingStored(meta=meta, uri=huge, duration_ms=2**31)),
            (
                subjects.control(call_id),
                control_pb2.ControlEvent(
                    meta=no_gen,
                    directive=control_pb2.PolicyDirective(action=999, text=huge),  # type: ignore[arg-type]
                ),
            ),
            (subjects.control(call_id), control_pb2.ControlEvent(meta=meta, barge_in=control_pb2.BargeIn())),
            (
                subjects.control(call_id),
                control_pb2.ControlEvent(meta=no_gen, cancel=control_pb2.CancelGeneration()),
            ),
            (
                subjects.control(call_id),
                control_pb2.ControlEvent(meta=meta, transfer=control_pb2.Transfer(target=huge, kind=999)),  # type: ignore[arg-type]
            ),
            (
                subjects.control(call_id),
                control_pb2.ControlEvent(meta=meta, dtmf=control_pb2.Dtmf(digit=huge)),
            ),
            (subjects.control(call_id), control_pb2.ControlEvent(meta=meta)),  # no kind at all
            (subjects.audit(call_id), policy_pb2.PolicyDecision(decision=999, rule=huge)),  # type: ignore[arg-type]
            (subjects.dial_check(), policy_pb2.DialCheck(number=huge, time_zone="Mars/Olympus")),
            (subjects.dial_check(), policy_pb2.DialCheck()),
            (subjects.transfer_check(), policy_pb2.TransferCheck(target=huge, reason=huge)),
            (subjects.transfer_check(), policy_pb2.TransferCheck()),
            (subjects.edge_dial(), call_pb2.CallStarted()),  # no call id, no target
            (
                subjects.edge_dial(),
                call_pb2.CallStarted(
                    meta=common_pb2.EventMeta(call_id=subjects.new_call_id()),
                    to_uri="sip:" + "a" * 100_000 + "@127.0.0.1:9",
                    direction=999,  # type: ignore[arg-type]
                ),
            ),
            (subjects.WORK_SUMMARIZE, records_pb2.SummaryRequest(transcript=" " * 200_000)),
            (
                subjects.WORK_SUMMARIZE,
                records_pb2.SummaryRequest(call_id="x" * 1000, transcript="caller: ?"),
            ),
            (subjects.WORK_SUMMARY_RESULTS, records_pb2.CallSummary(call_id="x" * 1000, summary="?")),
        ]
        + [
            (subjects.session_claim(stage), msg)
            for stage in subjects.STAGES
            for msg in (
                session_pb2.SessionClaim(),  # no call, no stage
                session_pb2.SessionClaim(
                    stage="other", call=call_pb2.CallStarted(meta=common_pb2.EventMeta(call_id=huge[:5000]))
                ),
            )
        ]
        + [
            (
                subjects.session_heartbeat(stage),
                session_pb2.Heartbeat(
                    stage=stage, replica_id="", call_ids=["c"] * 10_000, capacity=2**32 - 1
                ),
            )
            for stage in subjects.STAGES
        ]
        + [
            (
                subjects.control(call_id),
                control_pb2.ControlEvent(meta=meta, hangup=control_pb2.Hangup(reason=999)),
            )
        ]
    )  # type: ignore[arg-type]


async def greeting_call(bus: Bus) -> None:
    """A normal call: the greeting (with the AI disclosure) is spoken through the edge."""
    call_id = subjects.new_call_id()
    said: list[speech_pb2.AgentText] = []

    async def on_say(m: speech_pb2.AgentText, _: Delivery) -> None:
        said.append(m)

    sub = await bus.subscribe(subjects.say(call_id), speech_pb2.AgentText, on_say)
    transport = LoopbackTransport()
    call = EdgeCall(bus, inbound(call_id), transport)
    await call.start()
    await call.answered()
    await wait_for(lambda: said, timeout=30)
    assert said[0].text.startswith(DISCLOSURE), said[0].text
    await wait_for(lambda: transport.speech_frames > 25, timeout=60)
    await call.end(call_pb2.END_REASON_CALLER_HANGUP, "caller hung up")
    await bus.unsubscribe(sub)


def inbound(call_id: str) -> call_pb2.CallStarted:
    return call_pb2.CallStarted(
        meta=common_pb2.EventMeta(call_id=call_id),
        direction=call_pb2.DIRECTION_INBOUND,
        transport=call_pb2.TRANSPORT_SIP,
        from_uri="sip:+14155550134@test",
        to_uri="sip:agent@test",
        sample_rate=16000,
        codec="PCMU",
        agent="dental_clinic",
    )


async def test_services_survive_garbage_and_hostile_messages_on_every_subject(
    stack: Stack, edge_bus: Bus
) -> None:
    """Malformed, oversized and mislabelled bytes, then valid-but-hostile messages, on every
    subject a service reads (the edge process and an edge call in this process included);
    afterwards every service is still ready and a normal call still works."""
    call_id = subjects.new_call_id()
    transport = LoopbackTransport()
    call = EdgeCall(edge_bus, inbound(call_id), transport)
    await call.start()  # every stage holds a session for this call: its handlers see it all
    await call.answered()
    per_call = [
        subjects.lifecycle(call_id),
        subjects.audio_in(call_id),
        subjects.asr_events(call_id),
        subjects.transcript(call_id),
        subjects.reply(call_id),
        subjects.say(call_id),
        subjects.speech(call_id),
        subjects.tool(call_id),
        subjects.recording(call_id),
        *(subjects.control_event(call_id, kind) for kind in subjects.CONTROL_KINDS),
        subjects.audit(call_id),
    ]
    shared = (
        [subjects.dial_check(), subjects.edge_dial(), *subjects.WORK_SUBJECTS]
        + [subjects.session_claim(s) for s in subjects.STAGES]
        + [subjects.session_heartbeat(s) for s in subjects.STAGES]
    )
    other = call_pb2.CallEvent(
        started=call_pb2.CallStarted(meta=common_pb2.EventMeta(call_id="someone-else"))
    )
    payloads = [
        b"\xff\xfe garbage \x00\x01",
        b"\x0a\xff\xff\xff\xff\xff",
        b"\x00" * 900_000,
        other.SerializeToString(),
        np.random.default_rng(7).bytes(333),
        b"",
    ]
    assert edge_bus.data is not None
    for subject in per_call + shared:
        for payload in payloads:
            await edge_bus.data.publish(subject, payload)
    for subject, msg in hostile(call_id):
        if isinstance(msg, control_pb2.ControlEvent):  # each kind travels on its own subject
            subject = subjects.control_event(call_id, msg.WhichOneof("kind") or subjects.CONTROL_UNSET)
        await edge_bus.data.publish(subject, msg.SerializeToString())
    await edge_bus.data.flush()
    # The hangup with an unknown reason (sent last) still ends the edge call cleanly.
    await wait_for(lambda: call.ended.is_set(), timeout=10)
    await asyncio.sleep(1.0)
    # Every service answers ready again (a /readyz answer may take over a second while the LLM
    # writes the hostile call's summary on this 2-core machine; a dead process never would).
    rows = await wait_for(lambda: all_ready(stack), timeout=20, interval=0.25)
    assert {r["service"] for r in rows} == set(STACK_SERVICES)
    assert all(c.proc.poll() is None for c in stack.children)
    await greeting_call(edge_bus)  # still serving, end to end
    await wait_for(lambda: all_ready(stack), timeout=20, interval=0.25)
    assert all(c.proc.poll() is None for c in stack.children)


def all_ready(stack: Stack) -> list[dict[str, object]] | None:
    """The stack's status rows when every service reports ready, else None."""
    rows = stack.status()
    return rows if rows and all(r.get("ready") for r in rows) else None


async def test_control_api_lists_calls_hangs_up_and_audits_dial_decisions(
    stack: Stack, edge_bus: Bus
) -> None:
    import grpc
    from phoneagent.runtime.audit_query import AuditFilter, query_audit
    from phoneagent.runtime.bus import Lane
    from phoneagent.v1 import control_api_pb2, control_api_pb2_grpc, control_pb2, policy_pb2

    records = next(r for r in stack.status() if r["service"] == "records")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{records['grpc_port']}")
    api = control_api_pb2_grpc.CallControlStub(channel)
    call_id = subjects.new_call_id()
    controls: list[control_pb2.ControlEvent] = []

    async def on_ctl(m: control_pb2.ControlEvent, _: Delivery) -> None:
        controls.append(m)

    await edge_bus.subscribe(subjects.control(call_id), control_pb2.ControlEvent, on_ctl, lane=Lane.CONTROL)
    started = call_pb2.CallStarted(
        meta=common_pb2.EventMeta(call_id=call_id, ts_unix_ns=time.time_ns()),
        direction=call_pb2.DIRECTION_INBOUND,
        from_uri="sip:+14155550134@x",
    )
    await edge_bus.publish(subjects.lifecycle(call_id), call_pb2.CallEvent(started=started))

    async def listed() -> control_api_pb2.ListCallsResponse:
        return await api.ListCalls(control_api_pb2.ListCallsRequest(active_only=True))

    for _ in range(100):
        if any(c.call_id == call_id for c in (await listed()).calls):
            break
        await asyncio.sleep(0.05)
    info = await api.GetCall(control_api_pb2.GetCallRequest(call_id=call_id))
    assert info.remote_hint == "…34" and info.direction == call_pb2.DIRECTION_INBOUND  # redacted number
    await api.HangUp(control_api_pb2.HangUpRequest(call_id=call_id))
    await wait_for(lambda: any(c.WhichOneof("kind") == "hangup" for c in controls))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.GetCall(control_api_pb2.GetCallRequest(call_id="no-such-call"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    # No caller id is configured in this stack: policy must deny, and audit the denial.
    placed = await api.PlaceCall(
        control_api_pb2.PlaceCallRequest(to="+14155550134", purpose="reminder", time_zone="America/New_York")
    )
    assert placed.decision.decision == policy_pb2.DECISION_DENY and placed.decision.rule == "caller_id"
    js = edge_bus.jetstream()
    (audited,) = await query_audit(js, AuditFilter(call_id=placed.call_id, subject="dial"))
    assert audited.decision_id == placed.decision.decision_id and audited.number_hint == "…34"
    # The API audits its own calls too: the method, who called (no token on loopback) and the outcome.
    (api_record,) = await query_audit(js, AuditFilter(call_id=placed.call_id, subject="api"))
    assert dict(api_record.details) == {
        "method": "PlaceCall",
        "caller": "loopback",
        "outcome": "POLICY_DENIED",
    }
    await edge_bus.publish(
        subjects.lifecycle(call_id),
        call_pb2.CallEvent(
            ended=call_pb2.CallEnded(
                meta=common_pb2.EventMeta(call_id=call_id), reason=call_pb2.END_REASON_OPERATOR_HANGUP
            )
        ),
    )
    await channel.close()
