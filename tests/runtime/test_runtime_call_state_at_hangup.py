"""Nothing of a call's words stays on the bus once the call has ended (real nats-server, the real
LLM and ASR services' sessions behind their session hosts): the dialog state and the ASR resume
point are purged by their owners when CallEnded comes, a call handed to another replica keeps
them, and the buckets' TTL, the backstop for an owner that died as the call ended, is the
setting's, also on a bucket an older release created with a day."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from nats.js.errors import KeyDeletedError, KeyNotFoundError
from phoneagent.asr.engines.base import TranscriptResult
from phoneagent.asr.service import AsrService
from phoneagent.asr.settings import AsrSettings
from phoneagent.llm.dialog_state import DialogState
from phoneagent.llm.service import LlmService
from phoneagent.llm.settings import LlmSettings
from phoneagent.runtime import streams, subjects
from phoneagent.runtime.bus import Bus, Lane
from phoneagent.runtime.sessions import SessionHost, claim_session
from phoneagent.runtime.settings import CommonSettings, load
from phoneagent.v1 import call_pb2, common_pb2, speech_pb2
from support.common import wait_for
from support.llm import ScriptEngine

WORDS = "my card is 4111 1111 1111 1111"


class SilentEngine:
    name = "fake"
    sample_rate = 16000

    def transcribe(self, pcm: np.ndarray, *, partial: bool = False) -> TranscriptResult:
        return TranscriptResult(text="", language="en")

    def busy(self) -> bool:
        return False


async def gone(kv: Any, key: str) -> bool:
    try:
        await kv.get(key)
    except (KeyNotFoundError, KeyDeletedError):
        return True
    return False


async def stored_bytes(js: Any, bucket: str, key: str) -> bytes:
    """What the bucket's stream still holds for ``key`` (a purge leaves a marker without data)."""
    msg = await js.get_last_msg(f"KV_{bucket}", f"$KV.{bucket}.{key}")
    return bytes(msg.data or b"")


def started(call_id: str) -> call_pb2.CallStarted:
    meta = common_pb2.EventMeta(call_id=call_id)
    return call_pb2.CallStarted(meta=meta, direction=call_pb2.DIRECTION_INBOUND)


def ended(call_id: str) -> call_pb2.CallEvent:
    meta = common_pb2.EventMeta(call_id=call_id)
    return call_pb2.CallEvent(ended=call_pb2.CallEnded(meta=meta, reason=call_pb2.END_REASON_CALLER_HANGUP))


async def test_dialog_and_resume_point_are_purged_when_the_call_ends(fresh_nats: str) -> None:
    common = load(CommonSettings, nats_url=fresh_nats, replica_id="state-t")
    llm = LlmService(common, load(LlmSettings, {}))
    llm.engine = ScriptEngine([])  # type: ignore[assignment]
    asr = AsrService(common, load(AsrSettings, {}))
    asr.engine = SilentEngine()  # type: ignore[assignment]
    edge = Bus("edge-state-t")
    hosts: list[SessionHost] = []
    try:
        await edge.connect(fresh_nats)
        js = edge.jetstream()
        await streams.ensure(js)
        for svc in (llm, asr):
            await svc.bus.connect(fresh_nats)
        llm._kv = await streams.dialog_kv(llm.bus.jetstream())
        for svc in (llm, asr):
            assert svc.stage is not None
            host = SessionHost(svc.bus, svc.stage, f"{svc.stage}-t", svc.new_session)
            await host.start()
            hosts.append(host)
        dialog, resume = await streams.dialog_kv(js), await streams.asr_resume_kv(js)

        calls = [subjects.new_call_id(), subjects.new_call_id()]
        for cid in calls:
            for stage in ("llm", "asr"):
                await claim_session(edge, stage, started(cid))
            await llm.save_state(cid, DialogState(history=[{"role": "user", "content": WORDS}], turn=1))
            final = speech_pb2.Transcript(meta=common_pb2.EventMeta(call_id=cid, turn_id=1), final=True)
            final.speech_end_unix_ns = 5_000_000_000
            await asr.save_resume(cid, final)
            assert WORDS.encode() in (await dialog.get(cid)).value
            assert (await resume.get(cid)).value

        hangup, handed_over = calls
        await edge.publish(subjects.lifecycle(hangup), ended(hangup), lane=Lane.CONTROL)
        # A host drops the session from its list before closing it: wait for the purge itself.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not (await gone(dialog, hangup) and await gone(resume, hangup)):
            assert loop.time() < deadline, "per-call state still there after the call ended"
            await asyncio.sleep(0.02)
        await wait_for(lambda: all(hangup not in h.sessions for h in hosts), timeout=10)
        assert await stored_bytes(js, subjects.DIALOG_BUCKET, hangup) == b""
        assert await stored_bytes(js, streams.ASR_RESUME_BUCKET, hangup) == b""

        # A session closed for any other reason (drain, takeover) leaves the state to its next owner.
        for host in hosts:
            owned = host.sessions.pop(handed_over)
            await owned.session.close("released")
        assert WORDS.encode() in (await dialog.get(handed_over)).value
        assert not await gone(resume, handed_over)
    finally:
        for host in hosts:
            await host.close()
        for svc in (llm, asr):
            await svc.bus.close()
        await edge.close()


async def test_per_call_buckets_age_out_after_the_setting(js_bus: Bus) -> None:
    js = js_bus.jetstream()
    # A bucket as an older release created it: entries kept for a day.
    info = await js.stream_info(f"KV_{subjects.DIALOG_BUCKET}")
    info.config.max_age = streams.DAY
    await js.update_stream(info.config)
    await streams.ensure(js, call_state_ttl_s=900.0)
    for bucket in streams.CALL_STATE_BUCKETS:
        info = await js.stream_info(f"KV_{bucket}")
        assert info.config.max_age == 900.0, bucket
    assert load(CommonSettings, {}).call_state_ttl_s == 7200.0


async def test_a_purge_that_cannot_reach_the_bus_is_reported_not_raised() -> None:
    class Down:
        async def purge(self, key: str) -> None:
            await asyncio.sleep(10)

    assert await streams.forget_call(Down(), "c1", timeout=0.05) is False
