"""Where a taken-over ASR session resumes: the point the previous owner saved, else the
redacted transcript copy that PA_CALLS keeps (the live transcript subject is not stored).
Real nats-server, no model loaded."""

from __future__ import annotations

from phoneagent.asr.service import AsrService
from phoneagent.asr.settings import AsrSettings
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus
from phoneagent.runtime.settings import CommonSettings, load
from phoneagent.v1 import common_pb2, speech_pb2

CALL = "casrresume1"


def final(turn: int, speech_end_ns: int, text: str) -> speech_pb2.Transcript:
    meta = common_pb2.EventMeta(call_id=CALL, turn_id=turn)
    return speech_pb2.Transcript(meta=meta, final=True, text=text, speech_end_unix_ns=speech_end_ns)


async def test_resume_point_comes_from_the_stored_transcript_copy(js_bus: Bus, fresh_nats: str) -> None:
    svc = AsrService(load(CommonSettings, nats_url=fresh_nats), load(AsrSettings, {}))
    await svc.bus.connect(fresh_nats)
    try:
        fresh = await svc._resume(CALL)
        assert (fresh.last_turn, fresh.speech_end_ns) == (0, 0)  # nothing stored yet: start afresh

        js = js_bus.jetstream()
        for turn in (1, 2):
            copy = final(turn, turn * 1_000_000_000, "my number is [PHONE:34]")
            await js.publish(subjects.record(CALL, "transcript"), copy.SerializeToString())
        resume = await svc._resume(CALL)
        assert (resume.last_turn, resume.speech_end_ns) == (2, 2_000_000_000)
    finally:
        await svc.bus.close()


async def test_resume_point_saved_by_the_owner_wins_and_needs_no_policy(js_bus: Bus, fresh_nats: str) -> None:
    """The owning replica saves each final's turn and speech end itself, so a takeover goes on
    from there even when no redacted copy was stored (policy down) or the copy is older."""
    call = "casrresume2"
    svc = AsrService(load(CommonSettings, nats_url=fresh_nats), load(AsrSettings, {}))
    await svc.bus.connect(fresh_nats)
    try:
        tr = speech_pb2.Transcript(
            meta=common_pb2.EventMeta(call_id=call, turn_id=3), final=True, speech_end_unix_ns=7_000_000_000
        )
        await svc.save_resume(call, tr)
        resume = await svc._resume(call)
        assert (resume.last_turn, resume.speech_end_ns) == (3, 7_000_000_000)
    finally:
        await svc.bus.close()
