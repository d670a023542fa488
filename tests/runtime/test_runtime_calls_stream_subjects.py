"""An existing PA_CALLS stream, created by a release that stored the live transcript, say and
tool subjects, is switched by ``streams.ensure`` to the redacted record subjects: raw text
published afterwards is no longer kept, and what was stored before stays until max_age."""

from __future__ import annotations

import pytest
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from phoneagent.runtime import streams, subjects
from phoneagent.runtime.bus import Bus
from phoneagent.runtime.errors import InvalidArgument
from phoneagent.v1 import common_pb2, speech_pb2

OLD_SUBJECTS = [
    subjects.ALL_LIFECYCLE,
    subjects.ALL_TRANSCRIPTS,
    subjects.ALL_SAY,
    subjects.ALL_TOOLS,
    subjects.ALL_RECORDINGS,
]
CALL = "cstreamupd1"


def transcript(text: str) -> speech_pb2.Transcript:
    return speech_pb2.Transcript(meta=common_pb2.EventMeta(call_id=CALL, turn_id=1), final=True, text=text)


async def test_ensure_moves_an_old_calls_stream_to_the_record_subjects(fresh_nats: str) -> None:
    bus = Bus("stream-update-test")
    await bus.connect(fresh_nats)
    try:
        js = bus.jetstream()
        await js.add_stream(
            StreamConfig(
                name=subjects.CALLS_STREAM,
                subjects=OLD_SUBJECTS,
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                max_age=30 * streams.DAY,
            )
        )
        await js.publish(subjects.transcript(CALL), transcript("old raw 4111").SerializeToString())

        await streams.ensure(js)
        info = await js.stream_info(subjects.CALLS_STREAM)
        assert sorted(info.config.subjects or []) == sorted(subjects.CALLS_STREAM_SUBJECTS)
        assert info.config.max_age == 30 * streams.DAY and info.state.messages == 1

        # The live subject is no longer stored; its redacted copy is.
        await bus.publish(subjects.transcript(CALL), transcript("new raw 4111"))
        ack = await js.publish(subjects.record(CALL, "transcript"), transcript("[CARD]").SerializeToString())
        assert ack.stream == subjects.CALLS_STREAM
        info = await js.stream_info(subjects.CALLS_STREAM)
        assert info.state.messages == 2
        first = await js.get_msg(subjects.CALLS_STREAM, info.state.first_seq)
        assert first.subject == subjects.transcript(CALL)  # stored before: ages out with max_age
        last = await js.get_last_msg(subjects.CALLS_STREAM, subjects.record(CALL, "transcript"))
        assert speech_pb2.Transcript.FromString(last.data).text == "[CARD]"
        assert subjects.ALL_TRANSCRIPTS not in (info.config.subjects or [])
    finally:
        await bus.close()


def test_record_subjects_are_per_call_and_checked() -> None:
    assert subjects.record("c1", "tool") == "pa.v1.call.c1.record.tool"
    assert subjects.call_id_of(subjects.record("c1", "say")) == "c1"
    for bad in ("audio", "say.x", ""):
        with pytest.raises(InvalidArgument, match="record kind"):
            subjects.record("c1", bad)
