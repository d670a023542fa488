"""One sample inbound call as PA_CALLS receives it (shared by the records tests): lifecycle from
the edge, transcripts, spoken sentences and tool records on the ``record.*`` subjects where the
policy service publishes their copies. The records builder redacts again, so this sample keeps a
raw phone number to check that."""

from __future__ import annotations

import time

from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus
from phoneagent.v1 import call_pb2, common_pb2, media_pb2, speech_pb2, tools_pb2

MS = 1_000_000


def meta(call_id: str, turn: int = 0, gen: int = 0, ts: int = 0) -> common_pb2.EventMeta:
    return common_pb2.EventMeta(
        call_id=call_id, turn_id=turn, generation_id=gen, ts_unix_ns=ts or time.time_ns()
    )


async def publish_start(bus: Bus, call_id: str, t0: int) -> None:
    await bus.publish(
        subjects.lifecycle(call_id),
        call_pb2.CallEvent(
            started=call_pb2.CallStarted(
                meta=meta(call_id, ts=t0),
                direction=call_pb2.DIRECTION_INBOUND,
                transport=call_pb2.TRANSPORT_SIP,
                from_uri="sip:+15551234567@example.org",
                to_uri="sip:clinic@example.org",
                agent="dental_clinic",
            )
        ),
    )
    await bus.publish(
        subjects.lifecycle(call_id),
        call_pb2.CallEvent(answered=call_pb2.CallAnswered(meta=meta(call_id, ts=t0 + 100 * MS))),
    )


async def publish_conversation(bus: Bus, call_id: str, t0: int) -> None:
    """Greeting, one caller turn (with a phone number in it), a two-sentence answer after
    650 ms, and a booking tool call that succeeds. The answer's time points (t0 + ms): the caller
    speaks from 1000 and stops at 1950 (the edge's VAD), ASR's speech end 2000, end of speech
    declared 2150, final 2200, first token 2500, first sentence 2650, first TTS audio 2800, first
    packet to the caller 2850; the caller spoke over the answer after "Sure. Tuesday" (its 2nd
    sentence's first 7 characters)."""
    say, m = subjects.record(call_id, "say"), meta
    await bus.publish(
        say, speech_pb2.AgentText(meta=m(call_id, 0, 1, t0 + 200 * MS), text="Hello, dental clinic.")
    )
    await bus.publish(
        subjects.record(call_id, "transcript"),
        speech_pb2.Transcript(
            meta=m(call_id, 1),
            final=True,
            text="Book me in, my number is 555 123 4567",
            speech_start_unix_ns=t0 + 1000 * MS,
            speech_end_unix_ns=t0 + 2000 * MS,
            emitted_unix_ns=t0 + 2200 * MS,
            endpoint_unix_ns=t0 + 2150 * MS,
            compute_ms=40,
        ),
    )
    await bus.publish(
        say,
        speech_pb2.AgentText(
            meta=m(call_id, 1, 2, t0 + 2650 * MS),
            text="Sure.",
            first_token_unix_ns=t0 + 2500 * MS,
            request_unix_ns=t0 + 2210 * MS,
        ),
    )
    await bus.publish(
        say,
        speech_pb2.AgentText(
            meta=m(call_id, 1, 2, t0 + 2700 * MS),
            sentence_seq=1,
            text="Tuesday at nine is booked.",
            final=True,
        ),
    )
    tool = subjects.record(call_id, "tool")
    await bus.publish(
        tool,
        tools_pb2.ToolCall(
            meta=m(call_id, 1, 2),
            tool_call_id="t1",
            name="book_appointment",
            arguments_json='{"when": "tuesday 9"}',
        ),
        headers={subjects.TOOL_TYPE_HEADER: "ToolCall"},
    )
    await bus.publish(
        tool,
        tools_pb2.ToolResult(
            meta=m(call_id, 1, 2),
            tool_call_id="t1",
            name="book_appointment",
            ok=True,
            result_json='{"status": "booked"}',
            duration_ms=12,
        ),
        headers={subjects.TOOL_TYPE_HEADER: "ToolResult"},
    )


async def publish_playout(bus: Bus, call_id: str, t0: int) -> None:
    """The answer's first packet reaches the caller, then the caller speaks over it."""
    played = media_pb2.Playout(
        meta=meta(call_id, 1, 2, t0 + 2850 * MS),
        caller_stop_unix_ns=t0 + 1950 * MS,
        tts_first_audio_unix_ns=t0 + 2800 * MS,
        tts_synth_ms=90,
        first_packet_unix_ns=t0 + 2850 * MS,
    )
    await bus.publish(subjects.playout(call_id), played)
    cut = media_pb2.Playout()
    cut.CopyFrom(played)
    cut.meta.ts_unix_ns = t0 + 4000 * MS
    cut.interrupted, cut.played_ms, cut.heard_sentence_seq, cut.heard_text_chars = True, 1100, 1, 7
    await bus.publish(subjects.playout(call_id), cut)


async def publish_end(bus: Bus, call_id: str, t0: int) -> None:
    await bus.publish(
        subjects.lifecycle(call_id),
        call_pb2.CallEvent(
            ended=call_pb2.CallEnded(
                meta=meta(call_id, ts=t0 + 9000 * MS),
                reason=call_pb2.END_REASON_CALLER_HANGUP,
                duration_ms=8900,
            )
        ),
    )


async def publish_call(bus: Bus, call_id: str, t0: int) -> None:
    await publish_start(bus, call_id, t0)
    await publish_conversation(bus, call_id, t0)
    await publish_playout(bus, call_id, t0)
    await publish_end(bus, call_id, t0)
