"""Nothing unredacted is kept in PA_CALLS (real nats-server, the running policy service and the
records service's worker): the live subjects carry the caller's card number, social security number and
a callback phone number to the services that need them, while every message the calls stream
stores for the call holds only their redacted copies, from which the call record still builds."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from phoneagent.policy.record_copy import redact_json
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Delivery, Lane
from phoneagent.v1 import common_pb2, speech_pb2, tools_pb2
from support.common import wait_for
from support.policy_stack import Call, running_policy, running_records, start_call

CALLER = "+12125550123"
CARD_TEXT = "my card is 4111 1111 1111 1111 and my social is 123-45-6789"
CALLBACK = "415 555 0134"
RAW = ("4111", "1111", "123-45", "6789", "555 0134", "5550134", "0134", "ann@example.com")


async def stored_messages(bus: Bus, call_id: str) -> list[Any]:
    """Every message PA_CALLS holds for ``call_id`` (a fresh server: the whole stream is read)."""
    js = bus.jetstream()
    info = await js.stream_info(subjects.CALLS_STREAM)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(subjects.CALLS_STREAM, seq)
        if subjects.call_id_of(msg.subject) == call_id:
            out.append(msg)
    return out


def tool_records(call_id: str) -> list[tuple[tools_pb2.ToolCall | tools_pb2.ToolResult, str]]:
    meta = common_pb2.EventMeta(call_id=call_id, turn_id=1, generation_id=2)
    args = f'{{"name": "Ann", "phone": "+1 {CALLBACK}", "email": "ann@example.com", "digits": 4155550134}}'
    return [
        (
            tools_pb2.ToolCall(meta=meta, tool_call_id="t1", name="book_appointment", arguments_json=args),
            "ToolCall",
        ),
        (
            tools_pb2.ToolResult(
                meta=meta,
                tool_call_id="t1",
                name="book_appointment",
                ok=True,
                result_json=f'{{"status": "booked", "callback": "{CALLBACK}"}}',
                spoken_summary=f"Booked; we will call {CALLBACK} to confirm.",
                duration_ms=7,
            ),
            "ToolResult",
        ),
    ]


async def test_calls_stream_keeps_only_redacted_copies(fresh_nats: str, tmp_path: Path) -> None:
    async with (
        running_policy(fresh_nats, tmp_path / "policy.sqlite3") as svc,
        running_records(fresh_nats, tmp_path / "records.sqlite3") as records_svc,
    ):
        bus = Bus("record-copies-test")
        await bus.connect(fresh_nats)
        try:
            call = await start_call(bus, CALLER)
            cid = call.call_id
            live_transcripts: list[str] = []
            live_tools: list[bytes] = []

            async def on_transcript(tr: speech_pb2.Transcript, _: Delivery) -> None:
                live_transcripts.append(tr.text)

            async def on_tool(msg: tools_pb2.ToolCall, _: Delivery) -> None:
                live_tools.append(msg.SerializeToString())

            await bus.subscribe(subjects.transcript(cid), speech_pb2.Transcript, on_transcript)
            await bus.subscribe(subjects.tool(cid), tools_pb2.ToolCall, on_tool)
            await wait_for(lambda: svc.sessions is not None and cid in svc.sessions.sessions, timeout=10)

            await call.caller(1, CARD_TEXT)
            await call.agent(2, f"Thanks, Ann. I will call you back at {CALLBACK}.")
            for msg, kind in tool_records(cid):
                await bus.publish(subjects.tool(cid), msg, headers={subjects.TOOL_TYPE_HEADER: kind})
            # A tool record without its type header is not copied (nothing a record could read).
            await bus.publish(subjects.tool(cid), tool_records(cid)[0][0])

            # The live subscribers got the raw text: the services still hear the numbers.
            await wait_for(lambda: any(CALLBACK in t for t in call.texts()), timeout=10)
            await wait_for(lambda: len(live_tools) == 3, timeout=10)
            assert live_transcripts == [CARD_TEXT]
            assert all(CALLBACK.encode() in raw for raw in live_tools[:2])

            # PA_CALLS: the redacted copies, on the record subjects only, with the same ids.
            def copied() -> bool:
                return svc.record_copies.published >= 5 and svc.record_copies.skipped == 1

            await wait_for(copied, timeout=10)
            stored = await wait_for_stored(bus, cid, 5)
            kinds = sorted(m.subject.rsplit(".", 1)[-1] for m in stored)
            assert kinds == ["say", "say", "tool", "tool", "transcript"]
            assert all(".record." in m.subject for m in stored)
            for m in stored:  # the ids are hex and may hold any digits: left out of the check
                data = m.data.replace(cid.encode(), b"").replace(svc.replica.encode(), b"")
                for raw in RAW:
                    assert raw.encode() not in data, (m.subject, raw)
            transcript = next(m for m in stored if m.subject == subjects.record(cid, "transcript"))
            tr = speech_pb2.Transcript.FromString(transcript.data)
            assert tr.text == "my card is [CARD] and my social is [SSN]"
            assert tr.meta.turn_id == 1 and tr.final
            says = [
                speech_pb2.AgentText.FromString(m.data)
                for m in stored
                if m.subject == subjects.record(cid, "say")
            ]
            assert [s.meta.generation_id for s in says] == [2, 2] and "[PHONE:34]" in says[0].text
            tools = [m for m in stored if m.subject == subjects.record(cid, "tool")]
            assert [m.headers[subjects.TOOL_TYPE_HEADER] for m in tools] == ["ToolCall", "ToolResult"]
            result = tools_pb2.ToolResult.FromString(tools[1].data)
            assert result.ok and result.duration_ms == 7 and result.meta.generation_id == 2
            assert result.result_json == '{"status":"booked","callback":"[PHONE:34]"}'

            # The call record still builds from the copies: turns and tools present, redacted.
            records = records_svc.records
            assert records is not None

            def built() -> Any:
                rec = records.get(cid)
                done = rec is not None and len(rec.turns) == 2 and rec.tools and "status" in rec.tools[0]
                return rec if done else None  # the tool's result folded in too

            rec = await wait_for(built, timeout=20)
            assert [(t.role, t.turn_id) for t in rec.turns] == [("caller", 1), ("agent", 0)]
            assert rec.turns[0].text == "my card is [CARD] and my social is [SSN]"
            # The caller's name is personal data too (it was kept before names were recognised).
            assert "[PHONE:34]" in rec.turns[1].text and "Thanks, [NAME]." in rec.turns[1].text
            assert "Ann" not in rec.turns[1].text and "Ann" not in says[0].text + says[1].text
            assert rec.tools[0]["status"] == "booked" and "[PHONE:34]" in rec.tools[0]["arguments"]
            kept = rec.to_json().replace(cid, "")
            for raw in RAW:
                assert raw not in kept, raw
        finally:
            await bus.close()


async def wait_for_stored(bus: Bus, call_id: str, n: int) -> list[Any]:
    found: list[Any] = []

    async def poll() -> None:
        found[:] = await stored_messages(bus, call_id)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        await poll()
        if len(found) >= n or loop.time() > deadline:
            return found
        await asyncio.sleep(0.05)


def test_tool_json_stays_json_with_each_value_redacted() -> None:
    out = redact_json(
        '{"phone": "+1 415 555 0134", "n": 4155550134, "ok": true, "l": ["ann@example.com", 3]}'
    )
    assert out == '{"phone":"[PHONE:34]","n":"[PHONE:34]","ok":true,"l":["[EMAIL]",3]}'
    assert redact_json("{not json 4111 1111 1111 1111") == "{not json [CARD]"


async def test_a_copy_the_stream_never_stores_is_counted_and_never_raised() -> None:
    from phoneagent.policy.record_copy import RecordCopies
    from phoneagent.runtime import metrics

    copies = RecordCopies(Bus("not-connected"), give_up_after_s=0.2)
    errors = metrics.ERRORS.labels(kind="unavailable")
    before = errors._value.get()
    meta = common_pb2.EventMeta(call_id="c1", turn_id=1)
    await copies.say("c1", speech_pb2.AgentText(meta=meta, text=f"call {CALLBACK}"))
    await copies.transcript("c1", speech_pb2.Transcript(meta=meta, final=True, text=CARD_TEXT))
    assert copies.pending == 2  # queued: the live path never waits on the stream
    assert await copies.flush(timeout=10)
    assert (copies.failed, copies.published) == (2, 0) and copies.retries > 0
    assert errors._value.get() == before + 2
    await copies.stop()


async def test_a_full_outbox_drops_the_new_copy_counted() -> None:
    from phoneagent.policy.record_copy import RecordCopies

    copies = RecordCopies(Bus("not-connected"), max_queued=1, give_up_after_s=0.2)
    meta = common_pb2.EventMeta(call_id="c1", turn_id=1)
    for _ in range(3):  # the writer holds at most one, the queue one more
        await copies.transcript("c1", speech_pb2.Transcript(meta=meta, final=True, text="hello"))
    assert copies.failed >= 1
    assert await copies.flush(timeout=10)
    assert copies.failed == 3 and copies.published == 0
    await copies.stop()


async def test_records_queued_when_the_call_ends_still_get_their_copies(
    fresh_nats: str, tmp_path: Path
) -> None:
    """A burst of tool records and transcripts, then the call ends at once (on the control lane,
    which overtakes the data lane), while PA_CALLS cannot store them (as in a leader election or
    a machine too loaded to answer): every copy is in the stream once it can store again, each
    once and each kind in the order it was received. No grace period: the copies wait for the stream's
    acknowledgement, however long that takes."""
    async with running_policy(fresh_nats, tmp_path / "policy.sqlite3") as svc:
        bus = Bus("record-copies-end")
        await bus.connect(fresh_nats)
        js = bus.jetstream()
        try:
            call = await start_call(bus, CALLER)
            cid = call.call_id
            await wait_for(lambda: svc.sessions is not None and cid in svc.sessions.sessions, timeout=10)
            info = await js.stream_info(subjects.CALLS_STREAM)
            info.config.subjects = [s for s in info.config.subjects if s != subjects.ALL_RECORDS]
            await js.update_stream(info.config)  # the stream stores no copy for now
            n = 40
            for turn in range(1, n + 1):
                await call.caller(turn, f"turn {turn}, call me on {CALLBACK}")
                msg, kind = tool_records(cid)[0]
                msg.meta.turn_id = turn
                await bus.publish(subjects.tool(cid), msg, headers={subjects.TOOL_TYPE_HEADER: kind})
            await bus.publish(subjects.lifecycle(cid), call_ended(cid), lane=Lane.CONTROL)
            await wait_for(lambda: cid not in svc.sessions.sessions, timeout=10)  # type: ignore[union-attr]
            await wait_for(lambda: svc.record_copies.retries > 0, timeout=10)  # refused, not lost

            info.config.subjects = list(subjects.CALLS_STREAM_SUBJECTS)
            await js.update_stream(info.config)
            copies = svc.record_copies
            await wait_for(lambda: copies.published == 2 * n and copies.pending == 0, timeout=120)
            assert copies.failed == 0
            stored = [m for m in await stored_messages(bus, cid) if ".record." in m.subject]
            order = []
            for m in stored:
                leaf = m.subject.rsplit(".", 1)[-1]
                turn = (
                    speech_pb2.Transcript.FromString(m.data).meta.turn_id
                    if leaf == "transcript"
                    else tools_pb2.ToolCall.FromString(m.data).meta.turn_id
                )
                order.append((turn, leaf))
            for kind in ("transcript", "tool"):  # each kind in the order it came (own subscriptions)
                assert [t for t, leaf in order if leaf == kind] == list(range(1, n + 1)), kind
        finally:
            await bus.close()


def call_ended(call_id: str) -> Any:
    from phoneagent.v1 import call_pb2

    return call_pb2.CallEvent(
        ended=call_pb2.CallEnded(
            meta=common_pb2.EventMeta(call_id=call_id), reason=call_pb2.END_REASON_CALLER_HANGUP
        )
    )


async def test_a_record_that_arrives_after_the_call_ended_is_still_copied(
    fresh_nats: str, tmp_path: Path
) -> None:
    """The end of a call comes on the control lane and may reach policy before the call's last
    transcript and tool records (data lane), however late they come: they are still copied.
    Here the order is forced: the records are published only once the session has closed."""
    async with running_policy(fresh_nats, tmp_path / "policy.sqlite3") as svc:
        bus = Bus("record-copies-late")
        await bus.connect(fresh_nats)
        try:
            call = await start_call(bus, CALLER)
            cid = call.call_id
            await wait_for(lambda: svc.sessions is not None and cid in svc.sessions.sessions, timeout=10)
            await bus.publish(subjects.lifecycle(cid), call_ended(cid), lane=Lane.CONTROL)
            await wait_for(lambda: cid not in svc.sessions.sessions, timeout=10)  # type: ignore[union-attr]
            await call.caller(7, f"my last words: call me on {CALLBACK}")
            for msg, kind in tool_records(cid):
                await bus.publish(subjects.tool(cid), msg, headers={subjects.TOOL_TYPE_HEADER: kind})
            stored = await wait_for_stored(bus, cid, 4)  # lifecycle ended, transcript, two tools
            kinds = sorted(m.subject.rsplit(".", 1)[-1] for m in stored if ".record." in m.subject)
            assert kinds == ["tool", "tool", "transcript"]
            tr = next(m for m in stored if m.subject == subjects.record(cid, "transcript"))
            assert speech_pb2.Transcript.FromString(tr.data).text == "my last words: call me on [PHONE:34]"
            # A call that never ran here is not copied by this replica (its owner copies it). The
            # copier handles transcripts in order: once the next one of ours is copied, it saw it.
            other = subjects.new_call_id()
            await Call(bus, other).caller(1, "not ours")
            await call.caller(8, "and one more")
            await wait_for_stored(bus, cid, 5)
            assert await stored_messages(bus, other) == []
        finally:
            await bus.close()


async def test_two_replicas_copy_each_record_once_and_in_order(fresh_nats: str, tmp_path: Path) -> None:
    """Every policy replica hears every transcript and tool record; only the call's owner copies
    it, in the order it arrived (the records builder pairs a tool result with its call)."""
    async with (
        running_policy(fresh_nats, tmp_path / "a.sqlite3", common={"replica_id": "policy-a"}) as a,
        running_policy(fresh_nats, tmp_path / "b.sqlite3", common={"replica_id": "policy-b"}) as b,
    ):
        bus = Bus("record-copies-replicas")
        await bus.connect(fresh_nats)
        try:
            call = await start_call(bus, CALLER)
            cid = call.call_id
            await wait_for(
                lambda: sum(cid in s.sessions.sessions for s in (a, b) if s.sessions is not None) == 1,
                timeout=10,
            )
            n = 20
            for turn in range(1, n + 1):
                await call.caller(turn, f"turn {turn}")
                for msg, kind in tool_records(cid):
                    msg.tool_call_id = f"t{turn}"
                    await bus.publish(subjects.tool(cid), msg, headers={subjects.TOOL_TYPE_HEADER: kind})
            await bus.publish(subjects.lifecycle(cid), call_ended(cid), lane=Lane.CONTROL)

            # Both replicas have seen every record (the copier's two subscriptions, emptied).
            def seen_by_both() -> bool:
                return all(
                    sum(sub.received for sub in s.record_copier._subs) == 3 * n
                    and not any(len(sub.queue) for sub in s.record_copier._subs)
                    for s in (a, b)
                )

            await wait_for(seen_by_both, timeout=20)
            stored = await wait_for_stored(bus, cid, 3 * n + 1)
            turns = [
                speech_pb2.Transcript.FromString(m.data).meta.turn_id
                for m in stored
                if m.subject == subjects.record(cid, "transcript")
            ]
            assert turns == list(range(1, n + 1))
            tools = [
                (m.headers[subjects.TOOL_TYPE_HEADER], tools_pb2.ToolCall.FromString(m.data).tool_call_id)
                for m in stored
                if m.subject == subjects.record(cid, "tool")
            ]
            assert tools == [(k, f"t{t}") for t in range(1, n + 1) for k in ("ToolCall", "ToolResult")]
            assert a.record_copies.published + b.record_copies.published == 3 * n
        finally:
            await bus.close()


async def test_copies_do_not_wait_for_the_live_rules(
    fresh_nats: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The live rules run in a worker thread for each final transcript; on a loaded machine that
    takes a while. Here they hold on until the call has ended and its session has closed: every
    transcript is still copied, none waits behind the rules."""
    import threading

    from phoneagent.policy.live import LiveRules

    release = threading.Event()
    original = LiveRules.on_transcript

    def slow_rules(self: LiveRules, *args: Any) -> Any:
        release.wait(30)
        return original(self, *args)

    monkeypatch.setattr(LiveRules, "on_transcript", slow_rules)
    async with running_policy(fresh_nats, tmp_path / "policy.sqlite3") as svc:
        bus = Bus("record-copies-slow-rules")
        await bus.connect(fresh_nats)
        try:
            call = await start_call(bus, CALLER)
            cid = call.call_id
            await wait_for(lambda: svc.sessions is not None and cid in svc.sessions.sessions, timeout=10)
            n = 10
            for turn in range(1, n + 1):
                await call.caller(turn, f"turn {turn}")
            await bus.publish(subjects.lifecycle(cid), call_ended(cid), lane=Lane.CONTROL)
            await wait_for(lambda: cid not in svc.sessions.sessions, timeout=10)  # type: ignore[union-attr]
            stored = await wait_for_stored(bus, cid, n + 1)
            assert [m.subject for m in stored].count(subjects.record(cid, "transcript")) == n
        finally:
            release.set()
            await bus.close()


async def test_copies_are_redacted_off_the_live_path_in_arrival_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An approved sentence goes on to TTS while its copy waits for the redaction worker: the
    session's say() returns at once even when redaction is slow, and copies keep their order."""
    import threading

    from phoneagent.policy import record_copy

    sent: list[tuple[str, str]] = []

    class RecordingStream:
        async def publish(self, subject: str, data: bytes, **_: Any) -> None:
            kind = subject.rsplit(".", 1)[-1]
            msg_type = speech_pb2.AgentText if kind == "say" else speech_pb2.Transcript
            sent.append((kind, msg_type.FromString(data).text))

    class RecordingBus:
        def jetstream(self) -> RecordingStream:
            return RecordingStream()

    release = threading.Event()
    real_say_copy = record_copy.say_copy

    def slow_say_copy(msg: speech_pb2.AgentText, public: tuple[str, ...] = ()) -> speech_pb2.AgentText:
        assert release.wait(10), "never released"
        return real_say_copy(msg, public)

    monkeypatch.setattr(record_copy, "say_copy", slow_say_copy)
    copies = record_copy.RecordCopies(RecordingBus())  # type: ignore[arg-type]
    try:
        meta = common_pb2.EventMeta(call_id="c1", turn_id=1)
        await asyncio.wait_for(
            copies.say("c1", speech_pb2.AgentText(meta=meta, text="What is your date of birth?")), 1
        )
        tr = speech_pb2.Transcript(meta=meta, final=True, text="March third, nineteen eighty-five")
        await asyncio.wait_for(copies.transcript("c1", tr), 1)
        assert sent == [] and copies.published == 0  # both wait behind the slow redaction
        release.set()
        assert await copies.flush(30)
        # In order; the answer masked with the agent's question as its context.
        assert sent == [("say", "What is your date of birth?"), ("transcript", "[DOB]")]
    finally:
        release.set()
        await copies.stop()
